"""examples/gitops: the Argo CD health checks (run in Lua 5.1, as Argo CD's gopher-lua is) give
the right health for the statuses the operator writes, the argocd-cm patch carries them
verbatim, and the declared functions are valid."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelambda.api import Function, Trigger, load_manifests
from kubelambda.controller.resources.conditions import Condition, merge_conditions
from kubelambda.controller.resources.status import Blocked, DeploymentState, function_status

GITOPS = Path(__file__).resolve().parents[3] / "examples" / "gitops"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def run_health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    try:
        from lupa import lua51
    except ImportError:
        pytest.fail(
            "these tests run Argo CD's Lua health checks with lupa (Lua 5.1, as in Argo CD):"
            " ~/.cache/kubelambda/venv/bin/pip install 'lupa>=2' (part of the dev extra)"
        )
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(script)
    return str(result["status"]), str(result["message"])


def function_obj(status: dict[str, Any] | None, *, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"metadata": {"name": "f", "generation": generation}}
    if status is not None:
        obj["status"] = status
    return obj


def deployment(replicas: int, ready: int) -> DeploymentState:
    return DeploymentState(
        desired=replicas, ready=ready, updated=replicas, total=replicas, current=True, failure=None
    )


def status_of(
    *, blocked: Blocked | None = None, state: DeploymentState | None = None, min_replicas: int = 0
) -> dict[str, Any]:
    return function_status(
        old=None,
        generation=1,
        blocked=blocked,
        deployment=state,
        min_replicas=min_replicas,
        url="u",
        code_hash="h",
        now=NOW,
    )


FUNCTION_CASES = [
    ("scaled to zero", function_obj(status_of(state=deployment(0, 0))), "Healthy", "ScaledToZero"),
    ("serving", function_obj(status_of(state=deployment(2, 2))), "Healthy", "Available"),
    ("woken", function_obj(status_of(state=deployment(1, 0))), "Healthy", "Waking"),
    (
        "warm pods starting",
        function_obj(status_of(state=deployment(1, 0), min_replicas=1)),
        "Progressing",
        "Starting",
    ),
    (
        "invalid",
        function_obj(status_of(blocked=Blocked("InvalidSpec", "spec.x: bad"))),
        "Degraded",
        "spec.x: bad",
    ),
    (
        "no image",
        function_obj(status_of(blocked=Blocked("RuntimeUnavailable", "m"))),
        "Degraded",
        "RuntimeUnavailable",
    ),
    ("not reconciled yet", function_obj(None), "Progressing", "operator"),
    (
        "old generation",
        function_obj(status_of(state=deployment(0, 0)), generation=2),
        "Progressing",
        "latest spec",
    ),
]


@pytest.mark.parametrize(
    ("obj", "health", "says"), [c[1:] for c in FUNCTION_CASES], ids=[c[0] for c in FUNCTION_CASES]
)
def test_function_health(obj: dict[str, Any], health: str, says: str) -> None:
    status, message = run_health((GITOPS / "argocd" / "health-function.lua").read_text(), obj)
    assert status == health
    assert says in message


@pytest.mark.parametrize(
    ("ready", "health"),
    [
        (Condition("Ready", "True", "Published", "m"), "Healthy"),
        (Condition("Ready", "True", "Subscribed", "m"), "Healthy"),
        (Condition("Ready", "False", "FunctionNotFound", "m"), "Progressing"),
        (Condition("Ready", "False", "SubscribeFailed", "m"), "Degraded"),
    ],
)
def test_trigger_health(ready: Condition, health: str) -> None:
    obj = {
        "metadata": {"generation": 1},
        "status": {"conditions": merge_conditions([ready], None, generation=1, now=NOW)},
    }
    status, message = run_health((GITOPS / "argocd" / "health-trigger.lua").read_text(), obj)
    assert status == health
    assert message.startswith(ready.reason)


def test_the_argocd_cm_patch_carries_both_checks_verbatim() -> None:
    patch = yaml.safe_load((GITOPS / "argocd" / "argocd-cm-patch.yaml").read_text())
    data = patch["data"]
    assert (
        data["resource.customizations.health.kubelambda.dev_Function"]
        == (GITOPS / "argocd" / "health-function.lua").read_text()
    )
    assert (
        data["resource.customizations.health.kubelambda.dev_Trigger"]
        == (GITOPS / "argocd" / "health-trigger.lua").read_text()
    )


def test_the_declared_functions_are_valid_and_all_listed() -> None:
    folder = GITOPS / "functions"
    objects = load_manifests(folder)
    assert {o.name for o in objects if isinstance(o, Function)} == {"greeter", "reports"}
    assert {o.name for o in objects if isinstance(o, Trigger)} == {"greeter-http"}
    listed = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_the_argo_and_flux_manifests_point_at_the_functions() -> None:
    application = yaml.safe_load((GITOPS / "argocd" / "application.yaml").read_text())
    assert application["spec"]["source"]["path"] == "examples/gitops/functions"
    kustomization = yaml.safe_load((GITOPS / "flux" / "kustomization.yaml").read_text())
    assert kustomization["spec"]["path"] == "./examples/gitops/functions"
    assert kustomization["spec"]["wait"] is True
