"""store.Store: the operator's copies of watched objects, which an older copy never replaces,
whichever feed (watch event or the answer to a write) brings it last, and which a copy older
than the object's deletion does not bring back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from kubelambda.controller.store import TOMBSTONE_SECONDS, Store, newer
from kubelambda.platforms.kubernetes.kinds import CONFIG_MAP, DEPLOYMENT, FUNCTION, TRIGGER


def function(
    version: str | None, *, reason: str = "ScaledToZero", name: str = "hello"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "team-a"}
    if version is not None:
        meta["resourceVersion"] = version
    return {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Function",
        "metadata": meta,
        "status": {"conditions": [{"type": "Ready", "reason": reason}]},
    }


@pytest.mark.parametrize(
    ("version", "than", "expected"),
    [
        ("802", "795", True),
        ("795", "802", False),
        ("795", "795", False),
        ("1000", "999", True),  # as numbers, not as text
        ("999", "1000", False),
        ("123456789012345678901234567890", "9", True),  # any length (KEP-5504)
        ("0802", "795", False),  # leading zero: not a comparable version
        ("abc", "1", False),
        ("2", "", False),
        ("2", None, False),
        (None, "1", False),
        ("²", "1", False),  # a digit to str.isdigit, not to the API server
    ],
)
def test_newer_compares_resource_versions_as_the_api_server_defines_them(
    version: str | None, than: str | None, expected: bool
) -> None:
    assert newer(version, than) is expected


def test_an_older_copy_does_not_replace_a_newer_one() -> None:
    store = Store()
    store.put(FUNCTION, function("10", reason="Available"))

    # The answer to a write that a watch event of a later change overtook.
    kept = store.put(FUNCTION, function("9", reason="Waking"))

    assert kept["status"]["conditions"][0]["reason"] == "Available"
    stored = store.get(FUNCTION, namespace="team-a", name="hello")
    assert stored is not None and stored["metadata"]["resourceVersion"] == "10"


def test_a_newer_copy_replaces_an_older_one() -> None:
    store = Store()
    store.put(FUNCTION, function("9"))
    kept = store.put(FUNCTION, function("10", reason="Available"))
    assert kept["status"]["conditions"][0]["reason"] == "Available"
    assert store.holds(FUNCTION, function("10"))


@pytest.mark.parametrize(
    ("event", "held"),
    [
        ("10", True),  # the echo of what the store has
        ("9", True),  # overtaken by the answer to a later write
        ("11", False),
        (None, False),
        ("not-a-number", False),
    ],
)
def test_holds_an_event_at_the_stored_version_or_older(event: str | None, held: bool) -> None:
    store = Store()
    store.put(FUNCTION, function("10"))
    assert store.holds(FUNCTION, function(event)) is held


def test_versions_that_do_not_compare_leave_the_last_copy() -> None:
    store = Store()
    store.put(FUNCTION, function("b", reason="Available"))
    store.put(FUNCTION, function("a", reason="Waking"))
    stored = store.get(FUNCTION, namespace="team-a", name="hello")
    assert stored is not None and stored["status"]["conditions"][0]["reason"] == "Waking"


def test_a_kept_deployment_returns_slimmed_like_a_put_one() -> None:
    def deployment(version: str, replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "hello",
                "namespace": "team-a",
                "resourceVersion": version,
                "managedFields": [
                    {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {}}}
                ],
            },
            "spec": {"replicas": replicas},
        }

    store = Store()
    first = store.put(DEPLOYMENT, deployment("7", 2))
    kept = store.put(DEPLOYMENT, deployment("6", 1))
    assert kept == first
    assert kept["spec"]["replicas"] == 2 and "managedFields" not in kept["metadata"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("deleted_at", "put", "kept"),
    [
        ("10", "9", False),  # the answer to a write that the deletion overtook
        ("10", "10", False),  # the answer at the deleted version
        ("10", "11", True),  # created again
        ("10", None, True),  # no version to compare: the last copy wins
        ("b", "a", True),  # versions that do not compare: the last copy wins
        ("b", "b", False),
    ],
)
def test_a_copy_older_than_a_deletion_does_not_bring_it_back(
    deleted_at: str, put: str | None, kept: bool
) -> None:
    store = Store()
    store.put(FUNCTION, function("8"))
    store.remove(FUNCTION, function(deleted_at))  # the DELETED event

    answer = store.put(FUNCTION, function(put, reason="Available"))

    stored = store.get(FUNCTION, namespace="team-a", name="hello")
    assert (answer is not None, stored is not None) == (kept, kept)
    assert store.holds(FUNCTION, function(put)) is (put is not None)
    assert store.tombstones() == (0 if kept else 1)


def test_a_deletion_without_a_version_leaves_a_tombstone_at_the_stored_one() -> None:
    store = Store()
    store.put(FUNCTION, function("10"))
    store.remove(FUNCTION, function(None))
    assert store.put(FUNCTION, function("10")) is None
    assert store.holds(FUNCTION, function("9"))
    assert store.put(FUNCTION, function("12")) is not None


def test_a_tombstone_refuses_only_copies_of_its_own_object() -> None:
    store = Store()
    store.remove(FUNCTION, function("10"))
    assert store.put(DEPLOYMENT, {**function("9"), "kind": "Deployment"}) is not None
    assert store.put(FUNCTION, function("9", name="other")) is not None
    assert store.put(FUNCTION, function("9")) is None


def test_tombstones_expire() -> None:
    clock = Clock()
    store = Store(clock=clock)
    store.remove(FUNCTION, function("10"))
    clock.now += TOMBSTONE_SECONDS - 1
    assert store.holds(FUNCTION, function("9"))

    clock.now += 2
    assert not store.holds(FUNCTION, function("9"))
    assert store.tombstones() == 0


def test_tombstones_stay_bounded_while_functions_churn() -> None:
    clock = Clock()
    store = Store(clock=clock)
    for n in range(5000):
        clock.now += 0.1  # ten deletions a second
        name = f"f{n}"
        store.put(FUNCTION, function(str(2 * n + 1), name=name))
        store.remove(FUNCTION, function(str(2 * n + 2), name=name))
    assert store.count(FUNCTION) == 0
    assert store.tombstones() <= TOMBSTONE_SECONDS / 0.1 + 1

    # A burst faster than the tombstones expire: the oldest go first.
    burst = Store(clock=Clock(), max_tombstones=3)
    for n in range(5):
        burst.remove(FUNCTION, function("10", name=f"f{n}"))
    assert burst.tombstones() == 3
    assert [burst.put(FUNCTION, function("9", name=f"f{n}")) is None for n in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_objects_come_back_as_they_went_in_and_are_kept_deflated() -> None:
    store = Store()
    put = [function(str(n), name=f"fn-{n}", reason=f"reason {n}") for n in range(1, 200)]
    for obj in put:
        obj["spec"] = {"handler": "app.handler", "code": {"inline": {"files": {"a.py": "x"}}}}
        store.put(FUNCTION, obj)
    assert [store.get(FUNCTION, namespace="team-a", name=f"fn-{n}") for n in range(1, 200)] == put
    assert sorted(o["metadata"]["name"] for o in store.all(FUNCTION)) == sorted(
        o["metadata"]["name"] for o in put
    )
    kept = sum(map(len, store._objects[FUNCTION].values()))
    raw = sum(len(json.dumps(o, separators=(",", ":"))) for o in put)
    assert kept < raw / 3, "objects of one kind share most of their bytes"


def test_objects_larger_than_the_compression_window_come_back_whole() -> None:
    store = Store()
    # The first object of a kind is the dictionary: both it and later objects exceed 8 KiB.
    big: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"cm-{n}", "namespace": "team-a", "resourceVersion": str(n)},
            "data": {f"mod{i}.py": f"# {n} {i}\n" + "x = 1\n" * 200 for i in range(20)},
        }
        for n in range(1, 4)
    ]
    for obj in big:
        store.put(CONFIG_MAP, obj)
    for obj in big:
        assert store.get(CONFIG_MAP, namespace="team-a", name=obj["metadata"]["name"]) == obj


def test_names_lists_one_namespace_without_the_removed() -> None:
    store = Store()
    for name in ("a", "b", "gone"):
        store.put(FUNCTION, function("1", name=name))
    other = function("1", name="elsewhere")
    other["metadata"]["namespace"] = "team-b"
    store.put(FUNCTION, other)
    store.remove(FUNCTION, function("2", name="gone"))
    assert sorted(store.names(FUNCTION, namespace="team-a")) == ["a", "b"]
    assert store.names(FUNCTION, namespace="team-b") == ["elsewhere"]
    assert store.names(DEPLOYMENT, namespace="team-a") == []


def _trigger(name: str, function: object, *, version: str, namespace: str = "team-a") -> Any:
    return {
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": version},
        "spec": {"function": function},
    }


def test_referring_follows_what_each_object_names() -> None:
    """The operator asks which Triggers name a Function at each Function's arrival: looked up,
    not decoded from every Trigger (minutes at 15,000 of each)."""
    store = Store(refers={TRIGGER: lambda obj: (obj.get("spec") or {}).get("function")})
    store.put(TRIGGER, _trigger("a", "hello", version="5"))
    store.put(TRIGGER, _trigger("b", "hello", version="1"))
    store.put(TRIGGER, _trigger("c", "hello", version="1", namespace="team-b"))
    store.put(TRIGGER, _trigger("d", None, version="1"))
    assert store.referring(TRIGGER, namespace="team-a", name="hello") == ["a", "b"]
    store.put(TRIGGER, _trigger("b", "other", version="2"))  # names another Function now
    store.put(TRIGGER, _trigger("a", "other", version="3"))  # older: not kept
    store.remove(TRIGGER, _trigger("c", "hello", version="2", namespace="team-b"))
    assert store.referring(TRIGGER, namespace="team-a", name="hello") == ["a"]
    assert store.referring(TRIGGER, namespace="team-a", name="other") == ["b"]
    assert store.referring(TRIGGER, namespace="team-b", name="hello") == []
    assert sorted(store.keys(TRIGGER)) == [("team-a", "a"), ("team-a", "b"), ("team-a", "d")]


def test_recording_collects_what_its_own_context_puts_and_nothing_else() -> None:
    store = Store()

    def config_map(name: str, version: str) -> dict[str, Any]:
        meta = {"name": name, "namespace": "ns", "resourceVersion": version}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}

    async def put(name: str, version: str, after: asyncio.Event | None = None) -> None:
        if after is not None:
            await after.wait()
        store.put(CONFIG_MAP, config_map(name, version))

    async def main() -> set[tuple[Any, ...]]:
        go = asyncio.Event()
        watch = asyncio.create_task(put("c", "7", after=go))  # a watch handler's task
        with store.recording() as seen:
            store.put(CONFIG_MAP, config_map("a", "5"))
            await asyncio.create_task(put("b", "6"))  # a task the reconcile starts
            go.set()
            await watch
        store.put(CONFIG_MAP, config_map("d", "8"))  # after the recording
        return seen

    assert asyncio.run(main()) == {(CONFIG_MAP, "ns", "a", "5"), (CONFIG_MAP, "ns", "b", "6")}
