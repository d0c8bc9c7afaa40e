"""Reachability probes of the isolation scenarios (test_isolation.py for the operator's per-Function
NetworkPolicies, test_chart_policies.py for the chart's own): idle client pods that pass Pod
Security `restricted`, and PROBE, run inside one with `kubectl exec`, which reports for each
target whether it answered, timed out or failed otherwise.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Mapping
from functools import partial
from typing import Any

from e2e.kit import wait_for
from harness.cluster import Cluster

CONNECT_SECONDS = 4.0
UID = 10001
CLIENT_LABELS = {"app": "isolation-client"}
# A readiness gate nothing ever sets: the pod runs and can be exec'd into, but never becomes
# Ready, so a client carrying a component's labels never joins that component's Services.
NEVER_READY = "kubelambda.dev/isolation-probe"

# Run inside a pod: for each target one JSON line. HOST:PORT/PATH sends an HTTP GET for PATH;
# HOST:PORT sends nothing, for servers that speak first (NATS's INFO line). "status" is the
# first line read. "timeout" means the connection was never set up (the engine drops a refused
# connection's first packet); "silent" that it was, but nothing came back in time.
PROBE = textwrap.dedent(
    f"""
    import json, socket, sys
    for target in sys.argv[1:]:
        address, slash, path = target.partition("/")
        host, _, port = address.rpartition(":")
        try:
            conn = socket.create_connection((host, int(port)), timeout={CONNECT_SECONDS})
        except socket.timeout:
            found = {{"outcome": "timeout"}}
        except OSError as exc:
            found = {{"outcome": "error", "error": repr(exc)}}
        else:
            with conn:
                try:
                    conn.settimeout({CONNECT_SECONDS})
                    if slash:
                        request = f"GET /{{path}} HTTP/1.0\\r\\nHost: {{host}}\\r\\n\\r\\n"
                        conn.sendall(request.encode())
                    line = conn.recv(64).split(b"\\r\\n")[0].decode(errors="replace")
                    found = {{"outcome": "answered", "status": line}}
                except socket.timeout:
                    found = {{"outcome": "silent"}}
                except OSError as exc:
                    found = {{"outcome": "error", "error": repr(exc)}}
        print(json.dumps({{"target": target, **found}}), flush=True)
    """
)


def restricted_context() -> tuple[dict[str, Any], dict[str, Any]]:
    """Pod and container securityContext passing Pod Security `restricted`."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def client_pod(
    name: str,
    namespace: str,
    image: str,
    *,
    labels: Mapping[str, str] = CLIENT_LABELS,
    never_ready: bool = False,
) -> dict[str, Any]:
    """A plain pod of the runtime image (imported, never pulled) that idles until deleted;
    probes run in it with `kubectl exec`, once the API (so the engine) knows its address.
    `never_ready` keeps it out of every Service (see NEVER_READY)."""
    pod_context, container_context = restricted_context()
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 1,
        "securityContext": pod_context,
        "containers": [
            {
                "name": "client",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["python", "-I", "-c", "import signal; signal.pause()"],
                "securityContext": container_context,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ],
    }
    if never_ready:
        spec["readinessGates"] = [{"conditionType": NEVER_READY}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": spec,
    }


def _started(running: Cluster, namespace: str, name: str) -> bool:
    pod = running.get("pod", name, "-n", namespace)
    conditions = pod["status"].get("conditions", [])
    return any(c["type"] == "ContainersReady" and c["status"] == "True" for c in conditions)


def wait_started(running: Cluster, namespace: str, *names: str, timeout: float = 120) -> None:
    """Wait until each client pod's container runs (Ready or not: see NEVER_READY)."""
    for name in names:
        wait_for(
            partial(_started, running, namespace, name),
            what=f"client pod {namespace}/{name} running",
            timeout=timeout,
        )


def probe(running: Cluster, namespace: str, pod: str, *targets: str) -> dict[str, dict[str, Any]]:
    """Run PROBE in `pod` against each target (HOST:PORT/PATH or HOST:PORT); outcome by target."""
    done = running.kubectl(
        "exec", "-n", namespace, pod, "--", "python", "-I", "-c", PROBE, *targets, timeout=60
    )
    found = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {item["target"]: item for item in found}


def answered_eventually(
    running: Cluster, namespace: str, pod: str, target: str, *, timeout: float = 60
) -> dict[str, Any]:
    """Probe until answered: an allowed connection may race the engine learning of a new pod."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe(running, namespace, pod, target)[target]
        if found["outcome"] == "answered" or time.monotonic() > deadline:
            return found
