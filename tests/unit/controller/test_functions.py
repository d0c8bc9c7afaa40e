"""functions.FunctionReconciler on FakeCluster: what it creates, what it leaves alone, and what
its status says when it cannot do its job."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest

from kubelambda.api.labels import CODE_HASH_ANNOTATION
from kubelambda.controller.cluster import FakeCluster
from kubelambda.controller.config import FIELD_MANAGER, REPLICAS_MANAGER, ControllerConfig
from kubelambda.controller.operator import Operator
from kubelambda.platforms.kubernetes.errors import ApiError
from kubelambda.platforms.kubernetes.kinds import (
    CONFIG_MAP,
    DEPLOYMENT,
    FUNCTION,
    NETWORK_POLICY,
    SECRET,
    SERVICE,
    Kind,
    kind_of,
)
from unit.controller.reconciling import DeletedInFlightCluster, make_operator, restart, settle

MakeFunction = Callable[..., dict[str, Any]]
NS = "team-a"


def stored(cluster: FakeCluster, kind: Any, name: str = "hello") -> dict[str, Any]:
    found = cluster.stored(kind, namespace=NS, name=name)
    assert found is not None, f"{kind} {name} was not created"
    return found


def ready(cluster: FakeCluster, name: str = "hello") -> dict[str, Any]:
    conditions = stored(cluster, FUNCTION, name)["status"]["conditions"]
    return next(c for c in conditions if c["type"] == "Ready")


def test_a_new_function_gets_its_objects_and_a_status(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function())
    settle(operator)

    assert stored(cluster, SERVICE)["spec"]["clusterIP"] == "None"
    shared = stored(cluster, NETWORK_POLICY, "kubelambda-functions")
    assert shared["spec"]["policyTypes"] == ["Ingress", "Egress"]
    # Small inline code rides in the pods' environment: no ConfigMap; no destinations declared:
    # no policy of its own.
    assert cluster.stored(CONFIG_MAP, namespace=NS, name="hello-code") is None
    assert cluster.stored(NETWORK_POLICY, namespace=NS, name="hello") is None
    deployment = stored(cluster, DEPLOYMENT)
    assert deployment["spec"]["replicas"] == 0
    status = stored(cluster, FUNCTION)["status"]
    assert ready(cluster)["status"] == "True" and ready(cluster)["reason"] == "ScaledToZero"
    assert (
        status["url"]
        == "http://gateway.kubelambda.svc/2015-03-31/functions/team-a.hello/invocations"
    )
    assert (
        status["codeHash"]
        == deployment["spec"]["template"]["metadata"]["annotations"][CODE_HASH_ANNOTATION]
    )
    assert status["observedGeneration"] == 1
    assert [(e.type, e.reason) for e in cluster.events] == [("Normal", "Applied")]
    assert "created Deployment hello" in cluster.events[0].message


def test_reconciling_again_writes_nothing(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function())
    settle(operator)
    writes, events = len(cluster.writes), len(cluster.events)

    operator.resync()
    settle(operator)

    assert cluster.writes[writes:] == []
    assert len(cluster.events) == events


@dataclass
class OvertakenCluster(FakeCluster):
    """FakeCluster where the Deployment controller reports on a new Deployment (its status
    observes the generation) and the operator's watch delivers that event before the answer
    to the Deployment's creation comes back, as a busy operator can see them."""

    operator: Operator | None = None

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True
    ) -> dict[str, Any]:
        answer = await super().apply(obj, field_manager=field_manager, force=force)
        self._overtake(obj)
        return answer

    async def create(self, obj: Mapping[str, Any], *, field_manager: str) -> dict[str, Any] | None:
        answer = await super().create(obj, field_manager=field_manager)
        self._overtake(obj)
        return answer

    def _overtake(self, obj: Mapping[str, Any]) -> None:
        if kind_of(obj) == DEPLOYMENT and self.operator is not None:
            live = self.objects[self._key(DEPLOYMENT, NS, obj["metadata"]["name"])]
            live["status"] = {"observedGeneration": live["metadata"]["generation"]}
            live["metadata"]["resourceVersion"] = str(next(self._versions))
            self.operator.owned_event(DEPLOYMENT, "MODIFIED", copy.deepcopy(live))


@dataclass
class EchoingCluster(FakeCluster):
    """FakeCluster whose every write's watch event reaches the operator before its answer,
    as it does for about half of them under load."""

    operator: Operator | None = None

    def _echo(self, kind: Kind, obj: Mapping[str, Any]) -> None:
        if self.operator is None:
            return
        if kind == FUNCTION:
            self.operator.function_event("MODIFIED", copy.deepcopy(dict(obj)))
        else:
            self.operator.owned_event(kind, "ADDED", copy.deepcopy(dict(obj)))

    async def create(self, obj: Mapping[str, Any], *, field_manager: str) -> dict[str, Any] | None:
        answer = await super().create(obj, field_manager=field_manager)
        if answer is not None:
            self._echo(kind_of(obj), answer)
        return answer

    async def patch_status(
        self, kind: Kind, *, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        answer = await super().patch_status(kind, namespace=namespace, name=name, status=status)
        self._echo(kind, answer)
        return answer


def test_the_echoes_of_a_reconcile_s_own_writes_do_not_queue_it_again(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster = EchoingCluster()
    cluster, operator = make_operator(config, cluster=cluster)
    cluster.operator = operator
    operator.function_event("ADDED", cluster.put(make_function()))
    settle(operator)
    assert operator.reconciles == 1
    # A change someone else makes still reconciles (one made during a reconcile, at a version
    # that reconcile did not put: test_an_answer_overtaken_by_a_watch_event_does_not_hide_it).
    changed = stored(cluster, FUNCTION)
    changed["spec"]["memoryMB"] = 256
    operator.function_event("MODIFIED", cluster.put(changed))
    settle(operator)
    assert operator.reconciles == 2
    assert (
        stored(cluster, DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ]["memory"]
        == "256Mi"
    )


def test_an_answer_overtaken_by_a_watch_event_does_not_hide_it(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster = OvertakenCluster()
    cluster, operator = make_operator(config, cluster=cluster)
    cluster.operator = operator
    operator.function_event("ADDED", cluster.put(make_function()))
    settle(operator)

    progressing = next(
        c for c in stored(cluster, FUNCTION)["status"]["conditions"] if c["type"] == "Progressing"
    )
    assert (progressing["status"], progressing["reason"]) == ("False", "Complete")
    # The contract the restart test on a real API server checks: a new operator writes nothing.
    writes = len(cluster.writes)
    settle(restart(config, cluster))
    assert cluster.writes[writes:] == []


def test_replicas_start_at_the_minimum_then_belong_to_the_autoscaler(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    manifest = make_function(scaling={"minReplicas": 2})
    cluster, operator = make_operator(config, manifest)
    settle(operator)
    assert stored(cluster, DEPLOYMENT)["spec"]["replicas"] == 2
    assert ready(cluster)["reason"] == "Starting"

    cluster.scale(namespace=NS, name="hello", replicas=5, manager="kubelambda-autoscaler")
    operator.owned_event(DEPLOYMENT, "MODIFIED", stored(cluster, DEPLOYMENT))
    settle(operator)
    assert stored(cluster, DEPLOYMENT)["spec"]["replicas"] == 5
    assert stored(cluster, FUNCTION)["status"]["replicas"] == 5

    # A code change rolls the pods and still leaves replicas alone.
    changed = stored(cluster, FUNCTION)
    changed["spec"]["code"]["inline"]["files"]["app.py"] += "# v2\n"
    changed["metadata"]["generation"] = 2
    operator.function_event("MODIFIED", cluster.put(changed))
    settle(operator)
    deployment = stored(cluster, DEPLOYMENT)
    assert deployment["spec"]["replicas"] == 5
    assert (
        deployment["spec"]["template"]["metadata"]["annotations"][CODE_HASH_ANNOTATION]
        == (stored(cluster, FUNCTION)["status"]["codeHash"])
    )
    assert stored(cluster, FUNCTION)["status"]["observedGeneration"] == 2


def test_a_new_function_costs_one_write_per_object_and_its_status(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function())
    settle(operator)
    # The replicas handover waits for the Deployment's next apply (one fewer write per
    # Function); the autoscaler's first scale usually makes it unneeded.
    assert sorted(cluster.writes) == [
        ("apply", "NetworkPolicy", "kubelambda-functions"),
        ("create", "Deployment", "hello"),
        ("create", "Service", "hello"),
        ("status", "Function", "hello"),
    ]
    # The namespace's next Function finds the shared policy in place: two objects of its own,
    # each created with one request, none read first.
    writes, reads = len(cluster.writes), len(cluster.reads)
    operator.function_event("ADDED", cluster.put(make_function("world")))
    settle(operator)
    assert sorted(cluster.writes[writes:]) == [
        ("create", "Deployment", "world"),
        ("create", "Service", "world"),
        ("status", "Function", "world"),
    ]
    assert cluster.reads[reads:] == []


def test_mounted_code_gets_its_configmap_and_declared_destinations_their_policy(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    manifest = make_function(network={"egress": [{"cidr": "10.0.0.0/8", "ports": [5432]}]})
    cluster, operator = make_operator(replace(config, read_only_root=True), manifest)
    settle(operator)
    assert stored(cluster, CONFIG_MAP, "hello-code")["data"]["app.py"].startswith("def handler")
    own = stored(cluster, NETWORK_POLICY, "hello")
    assert own["spec"]["policyTypes"] == ["Egress"]
    assert own["spec"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    assert stored(cluster, NETWORK_POLICY, "kubelambda-functions")

    # Destinations no longer declared: the Function's own policy goes, the shared one stays.
    changed = stored(cluster, FUNCTION)
    del changed["spec"]["network"]
    operator.function_event("MODIFIED", cluster.put(changed))
    settle(operator)
    assert cluster.stored(NETWORK_POLICY, namespace=NS, name="hello") is None
    assert ("delete", "NetworkPolicy", "hello") in cluster.writes
    assert "deleted NetworkPolicy hello" in cluster.events[-1].message
    assert stored(cluster, NETWORK_POLICY, "kubelambda-functions")


def test_objects_an_earlier_version_made_are_deleted_once_no_pod_needs_them(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """Upgrading from the version that gave every Function its policy and code ConfigMap."""
    cluster, operator = make_operator(replace(config, read_only_root=True), make_function())
    settle(operator)
    # What the earlier version made: the Function's own full policy, and its code ConfigMap.
    function = stored(cluster, FUNCTION)
    old_policy = copy.deepcopy(stored(cluster, NETWORK_POLICY, "kubelambda-functions"))
    old_policy["metadata"] = {
        "name": "hello",
        "namespace": NS,
        "labels": stored(cluster, SERVICE)["metadata"]["labels"],
        "ownerReferences": stored(cluster, SERVICE)["metadata"]["ownerReferences"],
    }
    operator.owned_event(NETWORK_POLICY, "ADDED", cluster.put(old_policy))
    operator = restart(config, cluster)  # the new version: code in the environment
    settle(operator)

    assert cluster.stored(NETWORK_POLICY, namespace=NS, name="hello") is None
    # The old pods read the ConfigMap should they start again: it stays until the rollout ends.
    assert stored(cluster, CONFIG_MAP, "hello-code")
    deployment = stored(cluster, DEPLOYMENT)
    generation = deployment["metadata"]["generation"]
    deployment["status"] = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 0}
    operator.owned_event(DEPLOYMENT, "MODIFIED", cluster.put(deployment))
    settle(operator)
    assert stored(cluster, CONFIG_MAP, "hello-code")
    deployment["status"] = {"observedGeneration": generation, "replicas": 1, "updatedReplicas": 1}
    operator.owned_event(DEPLOYMENT, "MODIFIED", cluster.put(deployment))
    settle(operator)
    assert cluster.stored(CONFIG_MAP, namespace=NS, name="hello-code") is None
    assert stored(cluster, FUNCTION)["metadata"]["uid"] == function["metadata"]["uid"]


def test_the_shared_policy_deleted_by_hand_is_put_back(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function(), make_function("world"))
    settle(operator)
    policy = stored(cluster, NETWORK_POLICY, "kubelambda-functions")
    cluster.objects.pop(("networkpolicies.networking.k8s.io", NS, "kubelambda-functions"))
    operator.owned_event(NETWORK_POLICY, "DELETED", policy)
    settle(operator)
    assert stored(cluster, NETWORK_POLICY, "kubelambda-functions")["spec"] == policy["spec"]


def test_announcing_pods_get_their_functions_key_once_before_their_deployment(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    """docs/contracts.md "Announcements": the Secret exists before any pod that reads it, is
    made on a write of the Deployment only, and never replaced (running pods keep their key)."""
    announcing = replace(config, announce_url="http://op.kubelambda.svc:8083")
    cluster, operator = make_operator(announcing, make_function())
    settle(operator)
    writes = [w for w in cluster.writes if w[1] in ("Secret", "Deployment")]
    assert writes == [("create", "Secret", "hello-announce"), ("create", "Deployment", "hello")]
    secret = stored(cluster, SECRET, "hello-announce")
    assert secret["metadata"]["ownerReferences"][0]["name"] == "hello"
    writes_before = len(cluster.writes)
    operator.function_event("MODIFIED", cluster.put(stored(cluster, FUNCTION)))
    settle(operator)
    assert cluster.writes[writes_before:] == []  # nothing changed: not even a look at the key
    changed = stored(cluster, FUNCTION)
    changed["spec"]["memoryMB"] = 256
    operator.function_event("MODIFIED", cluster.put(changed))
    settle(operator)
    assert stored(cluster, SECRET, "hello-announce")["stringData"] == secret["stringData"]


def test_without_announcements_no_key_is_made(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function())
    settle(operator)
    assert cluster.stored(SECRET, namespace=NS, name="hello-announce") is None


def test_replicas_are_handed_over_before_the_deployment_is_applied_again(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function(scaling={"minReplicas": 2}))
    settle(operator)
    changed = stored(cluster, FUNCTION)
    changed["spec"]["memoryMB"] = 256
    writes = len(cluster.writes)
    operator.function_event("MODIFIED", cluster.put(changed))
    settle(operator)
    assert cluster.writes[writes:][:3] == [
        ("managedFields", "Deployment", "hello"),  # the creation's fields, made the apply's
        ("apply", "Deployment", "hello"),  # REPLICAS_MANAGER's claim, then the new spec
        ("apply", "Deployment", "hello"),
    ]
    owners = {e["manager"] for e in stored(cluster, DEPLOYMENT)["metadata"]["managedFields"]}
    assert REPLICAS_MANAGER in owners
    assert stored(cluster, DEPLOYMENT)["spec"]["replicas"] == 2


def test_replicas_survive_a_spec_change_before_any_autoscaling(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function(scaling={"minReplicas": 3}))
    settle(operator)
    changed = stored(cluster, FUNCTION)
    changed["spec"]["memoryMB"] = 256
    operator.function_event("MODIFIED", cluster.put(changed))
    settle(operator)
    # FakeCluster resets replicas to 1 if the controller dropped them while owning them alone.
    assert stored(cluster, DEPLOYMENT)["spec"]["replicas"] == 3


def test_hand_edits_of_owned_objects_are_put_back(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function())
    settle(operator)
    service = stored(cluster, SERVICE)
    original = copy.deepcopy(service["spec"])
    service["spec"]["selector"] = {"kubelambda.dev/function": "other"}
    operator.owned_event(SERVICE, "MODIFIED", cluster.put(service))
    policy = stored(cluster, NETWORK_POLICY, "kubelambda-functions")
    policy["spec"]["ingress"] = [{}]  # everyone in
    operator.owned_event(NETWORK_POLICY, "MODIFIED", cluster.put(policy))
    settle(operator)

    assert stored(cluster, SERVICE)["spec"] == original
    assert stored(cluster, NETWORK_POLICY, "kubelambda-functions")["spec"]["ingress"] != [{}]
    assert "updated Service hello" in cluster.events[-1].message
    assert "updated NetworkPolicy kubelambda-functions" in cluster.events[-1].message


def test_an_invalid_spec_is_reported_once(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    manifest = make_function()
    manifest["spec"]["timeoutSeconds"] = 901  # the CRD refuses this; say an old CRD let it in
    cluster, operator = make_operator(config, manifest)
    settle(operator)
    condition = ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert "spec.timeoutSeconds" in condition["message"]
    assert cluster.stored(DEPLOYMENT, namespace=NS, name="hello") is None
    assert [(e.type, e.reason) for e in cluster.events] == [("Warning", "InvalidSpec")]

    operator.resync()
    settle(operator)
    assert len(cluster.events) == 1


def test_a_runtime_without_an_image_is_reported(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function(runtime="python3.13"))
    settle(operator)
    condition = ready(cluster)
    assert condition["reason"] == "RuntimeUnavailable"
    assert "python3.13" in condition["message"] and "python3.12" in condition["message"]


def test_a_missing_code_configmap_is_reported_and_looked_for_again(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(
        config, make_function(code={"configMapRef": {"name": "my-code"}})
    )
    results = settle(operator)
    assert ready(cluster)["reason"] == "CodeNotFound"
    assert results[("Function", NS, "hello")].requeue_after

    cluster.put(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "my-code", "namespace": NS},
            "data": {"app.py": "x"},
        }
    )
    operator.resync()
    settle(operator)
    assert ready(cluster)["reason"] == "ScaledToZero"
    volumes = stored(cluster, DEPLOYMENT)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "code", "configMap": {"name": "my-code"}} in volumes
    assert cluster.stored(CONFIG_MAP, namespace=NS, name="hello-code") is None


@pytest.mark.parametrize(
    ("kind", "name", "spec"),
    [
        (SERVICE, "hello", {"ports": [{"port": 80}]}),  # the Function's own
        # The namespace's shared policy: every Function there is blocked, no pod unprotected.
        (NETWORK_POLICY, "kubelambda-functions", {"podSelector": {}}),
    ],
)
def test_an_object_of_someone_else_is_not_taken_over(
    make_function: MakeFunction, config: ControllerConfig, kind: Kind, name: str, spec: Any
) -> None:
    theirs = {
        "apiVersion": kind.api_version,
        "kind": kind.kind,
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }
    cluster = FakeCluster()
    cluster.put(theirs)
    cluster, operator = make_operator(config, make_function(), cluster=cluster)
    settle(operator)
    condition = ready(cluster)
    assert (condition["status"], condition["reason"]) == ("False", "ResourceConflict")
    assert f"{kind.kind} {name}" in condition["message"]
    assert stored(cluster, kind, name)["spec"] == spec
    assert ("Warning", "ResourceConflict") in [(e.type, e.reason) for e in cluster.events]
    assert cluster.stored(DEPLOYMENT, namespace=NS, name="hello") is None


class FailingCluster(FakeCluster):
    def __init__(self, error: ApiError) -> None:
        super().__init__()
        self.error = error

    async def apply(self, obj: Any, *, field_manager: str, force: bool = True) -> dict[str, Any]:
        raise self.error

    async def create(self, obj: Any, *, field_manager: str) -> dict[str, Any] | None:
        raise self.error


def test_a_transient_error_is_left_to_the_retry(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(
        config, make_function(), cluster=FailingCluster(ApiError(503, "ServiceUnavailable", "busy"))
    )
    with pytest.raises(ApiError):
        settle(operator)
    assert "status" not in stored(cluster, FUNCTION)


def test_a_refused_object_is_reported(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    error = ApiError(422, "Invalid", 'Deployment.apps "hello" is invalid: spec.template...')
    cluster, operator = make_operator(config, make_function(), cluster=FailingCluster(error))
    settle(operator)
    condition = ready(cluster)
    assert (condition["reason"], condition["message"]) == ("ApplyFailed", error.message)


def test_a_deleted_function_is_left_to_the_garbage_collector(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster, operator = make_operator(config, make_function())
    settle(operator)
    writes = len(cluster.writes)
    operator.function_event("DELETED", stored(cluster, FUNCTION))
    settle(operator)
    assert cluster.writes[writes:] == []


@pytest.mark.parametrize(
    ("kind", "name", "write"),
    [
        (SERVICE, "hello", FIELD_MANAGER),
        (NETWORK_POLICY, "kubelambda-functions", FIELD_MANAGER),
        (DEPLOYMENT, "hello", FIELD_MANAGER),
    ],
)
def test_an_object_deleted_while_its_write_is_answered_is_created_again(
    make_function: MakeFunction, config: ControllerConfig, kind: Kind, name: str, write: str
) -> None:
    cluster = DeletedInFlightCluster(kind=kind, write=write)
    cluster, operator = make_operator(config, cluster=cluster)
    cluster.operator = operator
    operator.function_event("ADDED", cluster.put(make_function()))

    settle(operator)  # no resync: the DELETED event alone brings the object back

    assert cluster.deleted == [(kind, name)]
    live = stored(cluster, kind, name)
    kept = operator.store.get(kind, namespace=NS, name=name)
    assert kept is not None
    assert kept["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    created = f"created {kind.kind} {name}"
    assert [created in e.message for e in cluster.events] == [True, True]
    assert ready(cluster)["reason"] == "ScaledToZero"


def test_a_function_deleted_while_its_status_write_is_answered_is_forgotten(
    make_function: MakeFunction, config: ControllerConfig
) -> None:
    cluster = DeletedInFlightCluster(kind=FUNCTION, write="status")
    cluster, operator = make_operator(config, cluster=cluster)
    cluster.operator = operator
    operator.function_event("ADDED", cluster.put(make_function()))
    settle(operator)
    assert cluster.deleted == [(FUNCTION, "hello")]

    # Were the answer kept, every resync would apply the objects of a Function that is gone.
    assert operator.store.get(FUNCTION, namespace=NS, name="hello") is None
    writes = len(cluster.writes)
    operator.resync()
    settle(operator)
    assert cluster.writes[writes:] == []
