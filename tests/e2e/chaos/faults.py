"""The chaos scenario's disruptions, one at a time, each returning once its component is back:
pods of the release deleted as a node drain or an eviction does (SIGTERM and their grace
period) or force-deleted as a node failure would leave them (async_events/disruptions.py), the
function's pod deleted, and the control plane's processes killed and started again
(harness.apiserver.ApiServer.restart)."""

from __future__ import annotations

from e2e.async_events.disruptions import ROLLOUT_TIMEOUT, component, force_delete, replaced
from e2e.chaos.window import Fault
from e2e.kit import FUNCTION_LABEL, FUNCTIONS_NAMESPACE, wait_for
from harness.cluster import Cluster
from harness.release import SYSTEM_NAMESPACE

GATEWAYS = 2  # the chart's default; the scenario scales the harness's one up to it


def delete_one(running: Cluster, name: str, *, replicas: int) -> None:
    """One Ready pod of the release's component `name` deleted with its grace period; then the
    old one gone and `replicas` Ready again."""
    [victim, *_] = running.ready_pods(SYSTEM_NAMESPACE, component(name))
    running.kubectl(
        "delete", "pod", "-n", SYSTEM_NAMESPACE, victim["metadata"]["name"], "--wait=false"
    )
    replaced(running, (name,), {victim["metadata"]["uid"]})
    running.wait_ready_pods(
        SYSTEM_NAMESPACE, component(name), timeout=ROLLOUT_TIMEOUT, count=replicas
    )


def delete_function_pod(running: Cluster, function: str) -> None:
    """The function's pod deleted with its grace period (an eviction); then a new one Ready."""
    selector = f"{FUNCTION_LABEL}={function}"
    [victim, *_] = running.ready_pods(FUNCTIONS_NAMESPACE, selector)
    old = victim["metadata"]["uid"]
    running.kubectl(
        "delete", "pod", "-n", FUNCTIONS_NAMESPACE, victim["metadata"]["name"], "--wait=false"
    )

    def new_one_ready() -> bool:
        pods = running.ready_pods(FUNCTIONS_NAMESPACE, selector)
        return bool(pods) and all(pod["metadata"]["uid"] != old for pod in pods)

    wait_for(new_one_ready, what=f"a new pod of {function} Ready", timeout=ROLLOUT_TIMEOUT)


def restart(process: str) -> Fault:
    return Fault(
        what=process,
        how="process killed (SIGKILL), started again with its data",
        act=lambda running, _function: running.api.restart(process),
    )


FAULTS = (
    Fault(
        what="gateway pod",
        how=f"one of {GATEWAYS} deleted (SIGTERM, grace period)",
        act=lambda running, _function: delete_one(running, "gateway", replicas=GATEWAYS),
    ),
    Fault(
        what="dispatcher",
        how="its pod force-deleted (no grace)",
        act=lambda running, _function: force_delete(running, ("dispatcher",)),
    ),
    Fault(
        what="operator",
        how="its pod force-deleted (no grace)",
        act=lambda running, _function: force_delete(running, ("operator",)),
    ),
    Fault(what="function pod", how="deleted (SIGTERM, grace period)", act=delete_function_pod),
    Fault(
        what="broker (NATS)",
        how="its pod deleted (SIGTERM), restarted on its volume",
        act=lambda running, _function: delete_one(running, "nats", replicas=1),
    ),
    restart("kube-apiserver"),
    restart("etcd"),
)
