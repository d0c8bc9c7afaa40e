"""examples/gitops/functions applied as Argo CD or Flux would, with the operator running: once
everything is reconciled, `kubectl diff` — what GitOps tools compute — finds no drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.apiserver import ApiServer
from integration.controller.operating import OperatorProcess, settled, wait_condition

FUNCTIONS = Path(__file__).resolve().parents[3] / "examples" / "gitops" / "functions"
NAMESPACE = "team-greetings"  # set by the kustomization


@pytest.fixture
def team(kube_api: ApiServer) -> Iterator[str]:
    yield NAMESPACE
    # Waited for: the next test declares the same namespace again.
    kube_api.kubectl("delete", "namespace", NAMESPACE, "--timeout=90s", timeout=120, check=False)


@pytest.mark.parametrize(
    "server_side", [False, True], ids=["client-side apply", "server-side apply"]
)
def test_no_drift_after_reconcile(
    kube_api: ApiServer, operator: OperatorProcess, team: str, server_side: bool
) -> None:
    how = ["--server-side"] if server_side else []
    kube_api.kubectl("apply", *how, "-k", str(FUNCTIONS))
    wait_condition(kube_api, "fn", "greeter", team, reason="ScaledToZero")
    wait_condition(kube_api, "fn", "reports", team, reason="Starting")
    wait_condition(kube_api, "trigger", "greeter-http", team, reason="Published")
    settled(kube_api, team, ["functions", "triggers", "deployments"])

    diff = kube_api.kubectl("diff", *how, "-k", str(FUNCTIONS), check=False)
    assert diff.returncode == 0, f"drift:\n{diff.stdout}\n{diff.stderr}"
