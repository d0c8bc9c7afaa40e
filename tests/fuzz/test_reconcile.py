"""The controller on generated specs (the CRD's shape, with junk a looser or older CRD would
let through): a reconcile never raises, and the object's status always gets a Ready
condition, which says InvalidSpec when the models refuse the spec."""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

from hypothesis import event, example, given

from fuzz.crd_values import crd_schema, with_junk
from kubelambda.api import parse_function, parse_trigger
from kubelambda.api.errors import SpecError
from kubelambda.controller.config import ControllerConfig
from kubelambda.platforms.kubernetes.kinds import FUNCTION, TRIGGER, Kind
from unit.controller.conftest import HELLO, RUNTIME_IMAGE
from unit.controller.reconciling import make_operator, settle

CONFIG = ControllerConfig(
    runtime_images=MappingProxyType({"python3.12": RUNTIME_IMAGE}),
    gateway_url="http://gateway.kubelambda.svc",
    gateway_namespace="kubelambda",
    region="eu-west-1",
    account_id="123456789012",
)


def ready_condition(objects: dict[Any, Any], kind: Kind, name: str) -> dict[str, Any]:
    from kubelambda.controller.cluster import FakeCluster

    assert isinstance(objects, FakeCluster)
    found = objects.stored(kind, namespace="team-a", name=name)
    assert found is not None
    conditions = found.get("status", {}).get("conditions", [])
    ready = [c for c in conditions if c["type"] == "Ready"]
    assert ready, f"no Ready condition in {found.get('status')}"
    return dict(ready[0])


def valid(parse: Any, manifest: dict[str, Any]) -> bool:
    try:
        parse(manifest)
    except SpecError:
        return False
    return True


@given(with_junk(crd_schema("functions")["properties"]["spec"]))
# Found by this test: the status writer read minReplicas from the raw spec, and raised on a
# spec that is not an object or a minReplicas that is not a number (the reconcile retried
# forever and the status never said InvalidSpec).
@example(spec=True)
@example(spec={"runtime": "python3.11", "scaling": {"minReplicas": {"": None}}})
def test_a_function_reconcile_always_reports_its_spec(spec: Any) -> None:
    manifest = copy.deepcopy(HELLO)
    manifest["spec"] = spec
    cluster, operator = make_operator(CONFIG, manifest)
    settle(operator)
    condition = ready_condition(cluster, FUNCTION, "hello")  # type: ignore[arg-type]
    if not valid(parse_function, manifest):
        event("refused")
        assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
        assert condition["message"]
    else:
        event(f"valid: {condition['reason']}")


@given(with_junk(crd_schema("triggers")["properties"]["spec"]))
# Found by this test: the status writer and the Function's watch (which looks for the
# Triggers of a Function that appears) read the raw spec as an object.
@example(spec=True)
def test_a_trigger_reconcile_always_reports_its_spec(spec: Any) -> None:
    manifest = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "fuzzed", "namespace": "team-a", "generation": 1},
        "spec": spec,
    }
    # The Trigger first: the Function's arrival then looks through the Triggers it has seen.
    cluster, operator = make_operator(CONFIG, manifest, copy.deepcopy(HELLO))
    settle(operator)
    condition = ready_condition(cluster, TRIGGER, "fuzzed")  # type: ignore[arg-type]
    if not valid(parse_trigger, manifest):
        event("refused")
        assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    else:
        event(f"valid: {condition['reason']}")
