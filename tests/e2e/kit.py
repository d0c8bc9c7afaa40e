"""What the e2e scenarios share besides fixtures: the chart's values for this harness, Function
manifests, waiting for a Function's Ready condition, and plain HTTP calls to the gateway."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from harness.cluster import Cluster
from harness.release import (
    FUNCTIONS_NAMESPACE,
    RELEASE,
    REPO,
    S3_REGION,
    S3_TARGET_ID,
    SYSTEM_NAMESPACE,
    Release,
    component_log,
    crash_report,
    refused_pods,
)

# FUNCTIONS_NAMESPACE enforces Pod Security `restricted` (harness.release labels it).
__all__ = ["FUNCTIONS_NAMESPACE", "REPO", "S3_REGION", "S3_TARGET_ID", "Installed", "component_log"]


def access_key(name: str, *, key: str, secret: str, functions: str) -> dict[str, Any]:
    """An Invoke API access key as the gateway reads them: a Secret in the release's namespace
    labelled kubelambda.dev/access-key, granted `functions` (NAMESPACE/NAME patterns)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": SYSTEM_NAMESPACE,
            "labels": {"kubelambda.dev/access-key": "true"},
        },
        "data": {
            "AWS_ACCESS_KEY_ID": b64(key),
            "AWS_SECRET_ACCESS_KEY": b64(secret),
            "functions": b64(functions),
        },
    }


def wait_for(condition: Callable[[], Any], *, what: str, timeout: float) -> Any:
    """Poll `condition` until it returns something truthy; fail at the deadline naming `what`
    and the last error (the API answering 'not found' while an object appears is 'not yet')."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except Exception as exc:  # any failure means "not yet"; the last one is reported
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not true after {timeout:.0f} s (last error: {last!r})")
        time.sleep(0.1)


Installed = Release  # what the `installed` fixture gives a scenario


def fail_on_crash(running: Cluster) -> None:
    """Fail at once, with the container's log, if a pod of the release crashed: waiting for a
    deadline would only delay the same answer."""
    crashed = crash_report(running)
    if crashed:
        pytest.fail(crashed)


def function_manifests(
    name: str,
    *,
    code: str,
    path: str | None = None,
    scaling: dict[str, Any] | None = None,
    namespace: str = FUNCTIONS_NAMESPACE,
) -> list[dict[str, Any]]:
    """A Function with inline code (app.handler) and, if `path` is given, an HTTP Trigger."""
    spec: dict[str, Any] = {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": code}}},
    }
    if scaling:
        spec["scaling"] = scaling
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "kubelambda.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    ]
    if path is not None:
        objects.append(
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Trigger",
                "metadata": {"name": f"{name}-http", "namespace": namespace},
                "spec": {"function": name, "http": {"path": path, "methods": ["GET", "POST"]}},
            }
        )
    return objects


def apply_ready(
    running: Cluster, objects: list[dict[str, Any]], *, namespace: str, timeout: int = 180
) -> None:
    """Apply Functions and Triggers, then wait until every one in `namespace` is Ready."""
    running.apply(objects)
    for kind in ("fn", "trig"):
        running.kubectl(
            "wait",
            kind,
            "--all",
            "-n",
            namespace,
            "--for=condition=Ready",
            f"--timeout={timeout}s",
            timeout=timeout + 20,
        )


def wait_function_ready(running: Cluster, name: str, *, timeout: float = 120) -> dict[str, Any]:
    """Wait for the Function's Ready condition (the controller's verdict); fail with its status
    and the operator's log at the deadline, or at once if a pod of the release crashes."""
    deadline = time.monotonic() + timeout
    while True:
        found = running.get("fn", name, "-n", FUNCTIONS_NAMESPACE)
        conditions = (found.get("status") or {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return found
        fail_on_crash(running)
        if time.monotonic() > deadline:
            refused = refused_pods(running, FUNCTIONS_NAMESPACE)
            pytest.fail(
                f"Function {name} not Ready after {timeout:.0f} s; "
                f"status: {json.dumps(found.get('status'), indent=1)}\n"
                + (f"pods refused:\n{refused}\n" if refused else "")
                + f"operator log:\n{component_log(running, 'operator')}"
            )
        time.sleep(0.2)


def http_get(url: str, *, timeout: float = 35.0) -> tuple[int, dict[str, str], bytes]:
    """One request; HTTP errors are answers too (status, headers, body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


FUNCTION_LABEL = "kubelambda.dev/function"  # on every object the controller makes for a Function
OWNED_KINDS = "configmaps,deployments,services,networkpolicies,pods"


def owned_objects(running: Cluster, name: str) -> list[str]:
    """`kind/name` of every object labelled as belonging to Function `name`."""
    listing = running.get(OWNED_KINDS, "-n", FUNCTIONS_NAMESPACE, "-l", f"{FUNCTION_LABEL}={name}")
    return [f"{item['kind']}/{item['metadata']['name']}" for item in listing["items"]]


def deployment_replicas(running: Cluster, name: str) -> int:
    """spec.replicas of the Function's Deployment (what the autoscaler last decided)."""
    found = running.get("deployments", "-n", FUNCTIONS_NAMESPACE, "-l", f"{FUNCTION_LABEL}={name}")
    if not found["items"]:
        pytest.fail(f"the controller made no Deployment labelled {FUNCTION_LABEL}={name}")
    return int(found["items"][0]["spec"].get("replicas", 1))


def function_pods(running: Cluster, name: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = running.get(
        "pods", "-n", FUNCTIONS_NAMESPACE, "-l", f"{FUNCTION_LABEL}={name}"
    )["items"]
    return pods


def nats_url(running: Cluster) -> str:
    """The release's NATS, as a client on the node reaches it (its Service), with the chart's
    credentials: for scenarios that publish to a queue Trigger's stream."""
    service = running.get("service", f"{RELEASE}-nats", "-n", SYSTEM_NAMESPACE)
    secret = running.get("secret", f"{RELEASE}-nats", "-n", SYSTEM_NAMESPACE)["data"]
    user, password = (base64.b64decode(secret[k]).decode() for k in ("user", "password"))
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "client")
    return f"nats://{user}:{password}@{service['spec']['clusterIP']}:{port}"


def notify_uploads(s3: Any, bucket: str, queue_arn: str) -> None:
    """Send `bucket`'s object-created events to the S3 server's webhook target `queue_arn` (the
    release's gateway), as `aws s3api put-bucket-notification-configuration` does."""
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
