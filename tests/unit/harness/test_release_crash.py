"""What the release's wait counts as a pod that does not run: a crash, an image that is not on
the node, a container config the kubelet cannot build; not the kubelet's own one-second wait for
its Secret and ConfigMap caches, which it retries on its next sync of the pod."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from harness import release


class _Pods:
    """Stands in for the e2e Cluster: `get pods` answers the given container statuses, `logs`
    a fixed line."""

    def __init__(self, *statuses: dict[str, Any]) -> None:
        self.statuses = list(statuses)

    def get(self, *args: str) -> dict[str, Any]:
        assert args[0] == "pods"
        return {
            "items": [
                {"metadata": {"name": "operator-1"}, "status": {"containerStatuses": self.statuses}}
            ]
        }

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(args), 0, stdout="the log\n", stderr="")


def _waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("CrashLoopBackOff", "back-off 10s restarting failed container"),
        ("ErrImageNeverPull", 'Container image "localhost/x:1" is not present'),
        ("CreateContainerConfigError", 'secret "kubelambda-nats" not found'),
    ],
)
def test_a_pod_that_cannot_run_is_reported_with_why_and_its_log(reason: str, message: str) -> None:
    report = release.crash_report(_Pods(_waiting(reason, message)))  # type: ignore[arg-type]

    assert report is not None
    assert "operator-1" in report and message in report and "the log" in report


def test_a_restarted_container_is_reported() -> None:
    restarted = {
        "restartCount": 1,
        "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 1}},
    }

    assert release.crash_report(_Pods(restarted)) is not None  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["secret", "configmap"])
def test_the_kubelets_cache_wait_is_not_a_crash(kind: str) -> None:
    """The kubelet gives its watch of a pod's Secret one second to sync, then says so and tries
    again on the pod's next sync; on a busy node that second passes (seen in CI)."""
    slow = _waiting(
        "CreateContainerConfigError",
        f"failed to sync {kind} cache: timed out waiting for the condition",
    )

    assert release.crash_report(_Pods(slow, _waiting("ContainerCreating"))) is None  # type: ignore[arg-type]
