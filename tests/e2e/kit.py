"""What the e2e scenarios share besides fixtures: the chart's values for this harness, Function
manifests, waiting for a Function's Ready condition, and plain HTTP calls to the gateway."""

from __future__ import annotations

import argparse
import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.cluster import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kubelambda"
RELEASE = "kubelambda"
SYSTEM_NAMESPACE = "kubelambda-system"
FUNCTIONS_NAMESPACE = "default"
GATEWAY_PORT = 8080  # the chart's gateway.port: the pod's public port
GATEWAY_ADMIN_PORT = 9090  # the chart's gateway.adminPort: /metrics
INSTALL_TIMEOUT = 180.0
OPERATOR_HEALTH_PORT = 8081  # the chart's operator.healthPort: liveness /healthz


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


@dataclass(frozen=True)
class Installed:
    """The chart's release, and where its gateway answers (a gateway pod's IP: the test client
    runs on the node, and pod IPs stay on this machine)."""

    namespace: str
    gateway_url: str
    gateway_pod_ips: tuple[str, ...]
    prometheus_url: str
    s3_webhook_arn: str

    def s3_token(self, running: Cluster) -> str:
        secret = running.get("secret", f"{RELEASE}-gateway", "-n", self.namespace)
        return base64.b64decode(secret["data"]["s3-token"]).decode()


S3_TARGET_ID = "kubelambda"
S3_REGION = "us-east-1"
CHART_COMMANDS = ("operator", "gateway")  # what the chart's Deployments run: `kubelambda <cmd>`


def require_chart() -> Path:
    if not (CHART / "Chart.yaml").exists():
        pytest.fail(
            f"the Helm chart is missing: {CHART}/Chart.yaml does not exist. It comes with issue 4 "
            "(controller, CRDs and chart, plus operator/Dockerfile); this scenario runs as soon "
            "as it is on main."
        )
    # The control-plane image runs `kubelambda <command>`; a command the CLI lacks would only
    # show up as pods crashing, minutes later.
    from kubelambda.cli import build_parser

    parser = build_parser()
    known: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            known |= set(action.choices)
    missing = [command for command in CHART_COMMANDS if command not in known]
    if missing:
        pytest.fail(
            f"the chart's pods run `kubelambda {' / '.join(CHART_COMMANDS)}`, but the CLI "
            f"(operator/kubelambda/cli.py) has no {', '.join(missing)} command yet (issue 4: "
            "the controller's and gateway's entry points). Known commands: "
            f"{', '.join(sorted(known)) or 'none'}"
        )
    return CHART


def chart_values(running: Cluster, *, prometheus_url: str) -> dict[str, Any]:
    """Values that point the chart at this run's images (imported, never pulled), one gateway
    replica (two cores), the node's Prometheus relay and the harness MinIO's webhook ARN."""
    repository, tag = running.images.control_plane.name.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "runtime": {
            "images": {"python3.12": running.images.runtime.name},
            "pullPolicy": "Never",
        },
        "prometheus": {"url": prometheus_url},
        "gateway": {"replicas": 1},
        "s3": {"webhookArn": f"arn:minio:sqs:{S3_REGION}:{S3_TARGET_ID}:webhook"},
    }


def fail_on_crash(running: Cluster, namespace: str, selector: str) -> None:
    """Fail at once, with the container's log, if a pod of the release crashes: waiting for a
    deadline would only delay the same answer."""
    for pod in running.get("pods", "-n", namespace, "-l", selector)["items"]:
        for status in pod["status"].get("containerStatuses", []):
            waiting = status.get("state", {}).get("waiting", {})
            terminated = status.get("lastState", {}).get("terminated")
            if status.get("restartCount", 0) > 0 or waiting.get("reason") in (
                "CrashLoopBackOff",
                "ErrImageNeverPull",
                "CreateContainerConfigError",
            ):
                name = pod["metadata"]["name"]
                logs = running.kubectl(
                    "logs", "-n", namespace, name, "--previous", "--tail=40", check=False
                )
                pytest.fail(
                    f"pod {name} of the release does not run: {waiting or terminated}\n"
                    f"its log:\n{logs.stdout or logs.stderr}"
                )


def function_manifests(
    name: str, *, code: str, path: str | None = None, scaling: dict[str, Any] | None = None
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
            "metadata": {"name": name, "namespace": FUNCTIONS_NAMESPACE},
            "spec": spec,
        }
    ]
    if path is not None:
        objects.append(
            {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Trigger",
                "metadata": {"name": f"{name}-http", "namespace": FUNCTIONS_NAMESPACE},
                "spec": {"function": name, "http": {"path": path, "methods": ["GET", "POST"]}},
            }
        )
    return objects


def wait_function_ready(running: Cluster, name: str, *, timeout: float = 120) -> dict[str, Any]:
    """Wait for the Function's Ready condition (the controller's verdict); fail with its status
    and the operator's log at the deadline, or at once if a pod of the release crashes."""
    deadline = time.monotonic() + timeout
    while True:
        found = running.get("fn", name, "-n", FUNCTIONS_NAMESPACE)
        conditions = (found.get("status") or {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return found
        fail_on_crash(running, SYSTEM_NAMESPACE, f"app.kubernetes.io/instance={RELEASE}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"Function {name} not Ready after {timeout:.0f} s; "
                f"status: {json.dumps(found.get('status'), indent=1)}\n"
                f"operator log:\n{component_log(running, 'operator')}"
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


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def component_log(running: Cluster, component: str, *, lines: int = 40) -> str:
    """The last lines of a release component's container log (the current or last run)."""
    done = running.kubectl(
        "logs",
        "-n",
        SYSTEM_NAMESPACE,
        "-l",
        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}",
        f"--tail={lines}",
        check=False,
    )
    return done.stdout or done.stderr
