"""A Function's life on a real API server with the operator running: restarts change nothing,
code changes roll the pod template, hand edits are put back, replicas are left to whoever
scaled them, deletion leaves nothing behind, and the user's objects stay as they declared them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.apiserver import ApiServer
from integration.controller.operating import (
    OperatorProcess,
    condition,
    get,
    objects,
    settled,
    wait_condition,
)
from support.manifests import inline_function
from support.waiting import wait_for

APP = 'def handler(event, context):\n    return {"v": 1}\n'


def function(name: str = "fn", *, app: str = APP, **spec: Any) -> dict[str, Any]:
    return inline_function(name, app, **spec)


def apply(api: ApiServer, namespace: str, *objects: dict[str, Any]) -> None:
    documents = "\n---\n".join(json.dumps(obj) for obj in objects)
    api.kubectl("apply", "-n", namespace, "-f", "-", input=documents)


OWNED = ("deployment", "service")  # small inline code has no ConfigMap, nor policy of its own
SHARED_POLICY = "kubelambda-functions"  # the namespace's Functions' NetworkPolicy


def owned(api: ApiServer, namespace: str, name: str = "fn") -> dict[str, Any]:
    return {kind: get(api, kind, name, namespace) for kind in OWNED}


def code_env(deployment: dict[str, Any] | None) -> dict[str, str]:
    """The Deployment's code variables (docs/contracts.md "Code in the environment")."""
    assert deployment is not None
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return {var["name"]: var["value"] for var in env if var["name"].startswith("KUBELAMBDA_CODE")}


def test_an_operator_restart_changes_nothing(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    trigger = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "fn-http"},
        "spec": {"function": "fn", "http": {"path": "/fn"}},
    }
    apply(kube_api, namespace, function(), function("warm", scaling={"minReplicas": 1}), trigger)
    wait_condition(kube_api, "fn", "fn", namespace, reason="ScaledToZero")
    wait_condition(kube_api, "fn", "warm", namespace, reason="Starting")
    wait_condition(kube_api, "trigger", "fn-http", namespace, reason="Published")
    kinds = ["functions", "triggers", "replicasets", *OWNED, "networkpolicies", "configmaps"]
    before = settled(kube_api, namespace, kinds)
    assert len(before) >= 10

    operator.restart()
    # Every Function and Trigger in the cluster is reconciled once after the restart.
    listed = json.loads(kube_api.kubectl("get", "fn,trigger", "-A", "-o", "json").stdout)["items"]
    operator.caught_up(reconciles=len(listed))

    after = objects(kube_api, namespace, kinds)
    changed = {
        key: {
            "managedFields": [_writer(e) for e in item["metadata"].get("managedFields") or ()],
            "status before": (before.get(key) or {}).get("status"),
            "status": item.get("status"),
        }
        for key, item in after.items()
        if _version(before.get(key)) != item["metadata"]["resourceVersion"]
    }
    assert not changed and after.keys() == before.keys(), (
        f"changed after the restart: {json.dumps(changed, indent=1)}\n"
        f"--- the operator before the restart:\n{operator.previous_output()[-4000:]}\n"
        f"--- after:\n{operator.output()}"
    )
    assert "applied" not in operator.output()


def _version(obj: dict[str, Any] | None) -> str | None:
    return obj["metadata"]["resourceVersion"] if obj else None


def _writer(entry: dict[str, Any]) -> dict[str, Any]:
    """Who wrote, how and when: a managedFields entry without the fields it owns."""
    return {
        key: entry[key] for key in ("manager", "operation", "subresource", "time") if key in entry
    }


def test_a_code_change_rolls_the_pod_template(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    apply(kube_api, namespace, function())
    first = wait_condition(kube_api, "fn", "fn", namespace, reason="ScaledToZero")
    template = get(kube_api, "deployment", "fn", namespace)["spec"]["template"]  # type: ignore[index]

    apply(kube_api, namespace, function(app=APP.replace("1", "2")))

    def rolled() -> dict[str, Any] | None:
        body = get(kube_api, "fn", "fn", namespace)
        status = (body or {}).get("status") or {}
        return body if status.get("observedGeneration") == 2 else None

    second = wait_for(rolled, timeout=60, what="status of generation 2")
    assert second["status"]["codeHash"] != first["status"]["codeHash"]
    deployment = get(kube_api, "deployment", "fn", namespace)
    assert deployment is not None
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["kubelambda.dev/code-hash"] == second["status"]["codeHash"]
    assert deployment["spec"]["template"] != template
    assert code_env(deployment)["KUBELAMBDA_CODE_0"] == APP.replace("1", "2")
    assert get(kube_api, "configmap", "fn-code", namespace) is None


def test_hand_edits_are_put_back_but_replicas_are_not_touched(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    apply(kube_api, namespace, function())
    wait_condition(kube_api, "fn", "fn", namespace, reason="ScaledToZero")
    original = owned(kube_api, namespace)
    policy = get(kube_api, "networkpolicy", SHARED_POLICY, namespace)
    assert policy is not None

    ns = ("-n", namespace)
    kube_api.kubectl("set", "image", "deployment/fn", "function=evil:1", *ns)
    kube_api.kubectl("delete", "service", "fn", *ns)
    # Out of the operator's watch (its label selector): the watch reports it deleted.
    kube_api.kubectl("label", "networkpolicy", SHARED_POLICY, "app.kubernetes.io/managed-by-", *ns)
    kube_api.kubectl("scale", "deployment/fn", "--replicas=3", *ns)

    def restored() -> bool:
        now = owned(kube_api, namespace)
        shared = get(kube_api, "networkpolicy", SHARED_POLICY, namespace)
        return (
            all(now.values())
            and now["deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]  # type: ignore[index]
            == original["deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
            and shared is not None
            and shared["metadata"]["labels"] == policy["metadata"]["labels"]
        )

    wait_for(restored, timeout=60, what="the hand edits undone")
    assert get(kube_api, "deployment", "fn", namespace)["spec"]["replicas"] == 3  # type: ignore[index]

    # Replicas stay with whoever scaled, even through a spec change.
    apply(kube_api, namespace, function(memoryMB=256))
    wait_for(
        lambda: get(kube_api, "fn", "fn", namespace)["status"]["observedGeneration"] == 2,  # type: ignore[index]
        timeout=60,
        what="generation 2 reconciled",
    )
    deployment = get(kube_api, "deployment", "fn", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 3
    # Its small inline code comes in the environment: /tmp is bounded in the container's layer.
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "256Mi",
        "ephemeral-storage": "512Mi",
    }
    body = wait_condition(kube_api, "fn", "fn", namespace, reason="Waking")  # woken: no pod ready
    assert body["status"]["replicas"] == 3


def test_deleting_a_function_removes_what_it_owned(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    apply(kube_api, namespace, function())
    wait_condition(kube_api, "fn", "fn", namespace, reason="ScaledToZero")
    assert all(owned(kube_api, namespace).values())

    kube_api.kubectl("delete", "fn", "fn", "-n", namespace)

    wait_for(
        lambda: not any(owned(kube_api, namespace).values()),
        timeout=90,
        what="the garbage collector removing the Function's objects",
    )


def test_a_trigger_waits_for_its_function(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    trigger = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "late"},
        "spec": {"function": "later", "http": {"path": "/later"}},
    }
    apply(kube_api, namespace, trigger)
    body = wait_condition(
        kube_api, "trigger", "late", namespace, reason="FunctionNotFound", status="False"
    )
    assert condition(body)["message"] == f"Function later does not exist in namespace {namespace}"  # type: ignore[index]
    kube_api.kubectl(
        "wait",
        "--for=jsonpath={.status.conditions[0].reason}=FunctionNotFound",
        "-n",
        namespace,
        "trigger/late",
    )

    apply(kube_api, namespace, function("later"))
    body = wait_condition(kube_api, "trigger", "late", namespace, reason="Published", status="True")
    assert body["status"]["url"] == "http://kubelambda-gateway.kubelambda.svc/later"

    kube_api.kubectl("delete", "fn", "later", "-n", namespace)
    wait_condition(kube_api, "trigger", "late", namespace, reason="FunctionNotFound")


def test_a_trigger_on_another_namespaces_path_is_refused_until_the_owner_goes(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    other = f"{namespace}-b"
    kube_api.kubectl("create", "namespace", other)
    try:
        base = f"/pay-{namespace}"

        def trigger(name: str, path: str) -> dict[str, Any]:
            return {
                "apiVersion": "kubelambda.dev/v1alpha1",
                "kind": "Trigger",
                "metadata": {"name": name},
                "spec": {"function": "fn", "http": {"path": path}},
            }

        apply(kube_api, namespace, function(), trigger("owner", base))
        wait_condition(kube_api, "trigger", "owner", namespace, reason="Published")
        apply(kube_api, other, function(), trigger("late", f"{base}/charge"))
        body = wait_condition(
            kube_api, "trigger", "late", other, reason="RouteConflict", status="False"
        )
        message = condition(body)["message"]  # type: ignore[index]
        assert f"belongs to namespace {namespace} (Trigger {namespace}/owner" in message
        assert "url" not in body["status"]

        kube_api.kubectl("delete", "trigger", "owner", "-n", namespace)
        wait_condition(kube_api, "trigger", "late", other, reason="Published", status="True")
    finally:
        kube_api.kubectl("delete", "namespace", other, "--wait=false")


def test_what_cannot_be_reconciled_is_in_status_and_events(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    apply(kube_api, namespace, function("future", runtime="python3.13"))
    body = wait_condition(
        kube_api, "fn", "future", namespace, reason="RuntimeUnavailable", status="False"
    )
    assert "python3.13" in condition(body)["message"]  # type: ignore[index]

    def warned() -> list[dict[str, Any]]:
        events = json.loads(
            kube_api.kubectl(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                "involvedObject.name=future",
                "-o",
                "json",
            ).stdout
        )["items"]
        return [e for e in events if e["type"] == "Warning" and e["reason"] == "RuntimeUnavailable"]

    [event] = wait_for(warned, timeout=30, what="a Warning event")
    assert event["involvedObject"]["kind"] == "Function"
    assert get(kube_api, "deployment", "future", namespace) is None


def test_the_users_function_is_left_as_declared(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    declared = function(labels_stay := "fn")
    declared["metadata"]["labels"] = {"team": "a"}
    apply(kube_api, namespace, declared)
    wait_condition(kube_api, "fn", labels_stay, namespace, reason="ScaledToZero")
    body = get(kube_api, "fn", "fn", namespace)
    assert body is not None
    meta = body["metadata"]
    assert meta["labels"] == {"team": "a"}
    assert set(meta.get("annotations", {})) <= {"kubectl.kubernetes.io/last-applied-configuration"}
    assert "finalizers" not in meta
    managers = kube_api.kubectl(
        "get", "fn", "fn", "-n", namespace, "--show-managed-fields", "-o", "json"
    )
    for entry in json.loads(managers.stdout)["metadata"]["managedFields"]:
        if entry["manager"].startswith("kubelambda"):
            assert entry.get("subresource") == "status", entry


MINE = {
    "Service": {"ports": [{"port": 80}], "selector": {"app": "mine"}},
    "NetworkPolicy": {"podSelector": {"matchLabels": {"app": "mine"}}},
}


@pytest.mark.parametrize(
    ("kind", "name"),
    [("Service", "hello"), ("NetworkPolicy", SHARED_POLICY)],  # a Function's, the namespace's
)
def test_an_object_that_is_not_ours_is_left_alone(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str, kind: str, name: str
) -> None:
    api_version = "v1" if kind == "Service" else "networking.k8s.io/v1"
    mine = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}, "spec": MINE[kind]}
    apply(kube_api, namespace, mine)
    apply(kube_api, namespace, function("hello"))
    body = wait_condition(
        kube_api, "fn", "hello", namespace, reason="ResourceConflict", status="False"
    )
    assert f"{kind} {name}" in condition(body)["message"]  # type: ignore[index]
    found = get(kube_api, kind.lower(), name, namespace)
    assert found is not None
    assert (
        found["spec"]["selector" if kind == "Service" else "podSelector"]
        == (MINE[kind]["selector" if kind == "Service" else "podSelector"])
    )
    assert "ownerReferences" not in found["metadata"]
    assert "labels" not in found["metadata"]


def test_what_the_spec_no_longer_says_is_removed(
    kube_api: ApiServer, operator: OperatorProcess, namespace: str
) -> None:
    """Server-side apply, not a merge: an env var or file dropped from the spec goes away."""
    files = {"app.py": APP, "helper.py": "X = 1\n"}
    first = function(env=[{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    first["spec"]["code"]["inline"]["files"] = files
    apply(kube_api, namespace, first)
    wait_condition(kube_api, "fn", "fn", namespace, reason="ScaledToZero")

    apply(kube_api, namespace, function(env=[{"name": "B", "value": "2"}]))

    def env_names() -> list[str] | None:
        deployment = get(kube_api, "deployment", "fn", namespace)
        if deployment is None:
            return None
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        names = [var["name"] for var in env]
        return names if "A" not in names else None

    names = wait_for(env_names, timeout=60, what="env var A removed from the Deployment")
    assert "B" in names
    # The file dropped too: its variable is gone, not left behind by the merge.
    code = code_env(get(kube_api, "deployment", "fn", namespace))
    assert code == {"KUBELAMBDA_CODE_FILES": '["app.py"]', "KUBELAMBDA_CODE_0": APP}
