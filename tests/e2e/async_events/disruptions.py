"""What the async_events scenarios do to the release: roll its Deployments
(`kubectl rollout restart`) or force-delete their pods, then wait until new pods are Ready."""

from __future__ import annotations

from collections.abc import Sequence

from e2e.kit import component_log, fail_on_crash, wait_for
from harness.cluster import Cluster
from harness.release import SELECTOR, SYSTEM_NAMESPACE

ROLLOUT_TIMEOUT = 180.0


def component(name: str) -> str:
    return f"{SELECTOR},app.kubernetes.io/component={name}"


def pod_uids(running: Cluster, deployments: Sequence[str]) -> set[str]:
    """The pods of `deployments` now, whatever their state."""
    found: set[str] = set()
    for name in deployments:
        pods = running.get("pods", "-n", SYSTEM_NAMESPACE, "-l", component(name))["items"]
        found |= {pod["metadata"]["uid"] for pod in pods}
    return found


def replaced(running: Cluster, deployments: Sequence[str], old: set[str]) -> None:
    """Wait until each Deployment has a Ready pod that is not one of `old`, and none of `old`
    is left: the disruption really replaced them."""

    def done() -> bool:
        fail_on_crash(running)
        if pod_uids(running, deployments) & old:
            return False
        return all(running.ready_pods(SYSTEM_NAMESPACE, component(name)) for name in deployments)

    names = " and ".join(deployments)
    wait_for(done, what=f"new {names} pods Ready", timeout=ROLLOUT_TIMEOUT)


def roll(running: Cluster, deployments: Sequence[str]) -> None:
    """`kubectl rollout restart` of the Deployments; then their new pods Ready."""
    old = pod_uids(running, deployments)
    names = [f"deployment/kubelambda-{name}" for name in deployments]
    running.kubectl("rollout", "restart", *names, "-n", SYSTEM_NAMESPACE)
    replaced(running, deployments, old)


def force_delete(running: Cluster, deployments: Sequence[str]) -> None:
    """The Deployments' pods deleted at once, without grace (a node failure, an OOM kill);
    then their new pods Ready."""
    old = pod_uids(running, deployments)
    for name in deployments:
        running.kubectl(
            "delete", "pod", "-n", SYSTEM_NAMESPACE, "-l", component(name),
            "--grace-period=0", "--force", "--wait=false",
        )  # fmt: skip
    replaced(running, deployments, old)


def logs(running: Cluster, deployments: Sequence[str]) -> str:
    return "\n".join(
        f"--- {name} log:\n{component_log(running, name, lines=60)}" for name in deployments
    )
