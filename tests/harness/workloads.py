"""Raw Kubernetes objects that run the runtime image without the controller (a ConfigMap with the
handler's code, a Deployment mounting it), and invoking a pod over its IP. Scenario 0 and the raw
cold-start benchmark use them; with the controller on main, the product builds these itself.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
RUNTIME_PORT = 8080
UID = 10001


def code_configmap(name: str, namespace: str, files: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": files,
    }


def runtime_deployment(
    *,
    name: str,
    namespace: str,
    image: str,
    handler: str,
    code_configmap: str,
    replicas: int = 1,
    code_in_environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A hardened runtime pod as the controller should make one: non-root, read-only root,
    writable /tmp, no capabilities, no service-account token, a readiness probe on /healthz.
    ``code_in_environment``: these files (path → text) come as the runtime's code variables
    instead, literal values (docs/contracts.md "Code in the environment"), in a pod without
    volumes whose root is writable, as the controller makes a small inline-code Function's."""
    labels = {"app.kubernetes.io/name": name, "kubelambda.dev/e2e": "raw"}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 2,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "function",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "env": [
                                {"name": "_HANDLER", "value": handler},
                                {"name": "AWS_LAMBDA_FUNCTION_NAME", "value": name},
                            ],
                            "ports": [{"name": "http", "containerPort": RUNTIME_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": RUNTIME_PORT},
                                "periodSeconds": 1,
                                "failureThreshold": 1,
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "128Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "volumeMounts": [
                                {"name": "code", "mountPath": "/var/task", "readOnly": True},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "code", "configMap": {"name": code_configmap}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                    ],
                },
            },
        },
    }
    if code_in_environment:
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        del pod["volumes"], container["volumeMounts"]
        container["securityContext"]["readOnlyRootFilesystem"] = False
        container["env"].append(
            {"name": "KUBELAMBDA_CODE_FILES", "value": json.dumps(list(code_in_environment))}
        )
        for index, text in enumerate(code_in_environment.values()):
            container["env"].append({"name": f"KUBELAMBDA_CODE_{index}", "value": text})
    return deployment


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def invoke(ip: str, event: Any, *, timeout: float = 10.0) -> Answer:
    """POST an event to a runtime pod's invoke endpoint, as the gateway does."""
    request = urllib.request.Request(
        f"http://{ip}:{RUNTIME_PORT}{INVOKE_PATH}",
        data=json.dumps(event).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
        return Answer(
            status=response.status,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=json.loads(raw) if raw else None,
        )


def invoke_until_answered(
    ip: str, event: Any, *, timeout: float, interval: float = 0.005
) -> Answer:
    """Invoke as soon as the pod's port accepts connections, within `timeout` seconds: what a
    client waiting for a cold start sees (refused connections count as 'not yet')."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return invoke(ip, event, timeout=max(0.5, deadline - time.monotonic()))
        except (ConnectionError, urllib.error.URLError, TimeoutError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval)
