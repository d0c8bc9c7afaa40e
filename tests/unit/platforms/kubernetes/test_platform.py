"""platforms/kubernetes/platform.py fed events by hand: instances per Function follow its
EndpointSlices, carry the Function's concurrency, and listeners hear only real changes; specs
follow Functions and Triggers. (The watches themselves run in
tests/integration/controller/test_platform.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from kubelambda.api import Function, Trigger
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.platform import Instance
from kubelambda.platforms.kubernetes import platform as platform_module
from kubelambda.platforms.kubernetes.platform import KubernetesPlatform
from kubelambda.platforms.kubernetes.waker import WarmPod
from support.waiting import wait_for_async


def endpoint_slice(name: str, function: str, *ips: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "labels": {
                "kubernetes.io/service-name": function,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [{"kind": "Service", "name": function, "controller": True}],
        },
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"name": f"pod-{ip}"}}
            for ip in ips
        ],
    }


FUNCTION = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "hello", "namespace": "ns"},
    "spec": {
        "runtime": "python3.12",
        "handler": "app.handler",
        "concurrency": 4,
        "code": {"inline": {"files": {"app.py": ""}}},
    },
}
TRIGGER = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Trigger",
    "metadata": {"name": "hello-http", "namespace": "ns"},
    "spec": {"function": "hello", "http": {"path": "/hello"}},
}
HELLO = FunctionKey("ns", "hello")


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[FunctionKey, tuple[Instance, ...]]] = []
        self.specs: list[tuple[list[str], list[str]]] = []
        self.woken: list[FunctionKey] = []
        self.concurrencies: list[int] = []
        self.named: WarmPod | None = None  # what the autoscaler's answer names

    def instances(self, key: FunctionKey, instances: Sequence[Instance]) -> None:
        self.changes.append((key, tuple(instances)))

    def on_specs(self, functions: Sequence[Function], triggers: Sequence[Trigger]) -> None:
        self.specs.append(([f.name for f in functions], [t.name for t in triggers]))

    async def wake(self, key: FunctionKey, concurrency: int) -> WarmPod | None:
        self.woken.append(key)
        self.concurrencies.append(concurrency)
        return self.named


def platform(
    recorder: Recorder, probe: Callable[[str, int], Awaitable[bool]] | None = None
) -> KubernetesPlatform:
    made = KubernetesPlatform(
        client=None,  # type: ignore[arg-type]  # events come by hand here
        waker=recorder.wake,
        on_specs=recorder.on_specs,
        probe=probe,
    )
    made.subscribe(recorder.instances)
    return made


async def hello_served(recorder: Recorder) -> KubernetesPlatform:
    """A platform given FUNCTION and TRIGGER, its specs notified."""
    running = platform(recorder)
    running.function_event("ADDED", FUNCTION)
    running.trigger_event("ADDED", TRIGGER)
    await asyncio.sleep(0)
    return running


def test_instances_follow_the_slices_of_a_function() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        running = platform(recorder)
        running.function_event("ADDED", FUNCTION)
        running.slice_event("ADDED", endpoint_slice("hello-a", "hello", "10.1.0.5"))
        running.slice_event("ADDED", endpoint_slice("hello-b", "hello", "10.1.0.6"))
        assert running.ready_instances(HELLO) == (
            Instance(id="pod-10.1.0.5", host="10.1.0.5", port=8080, concurrency=4),
            Instance(id="pod-10.1.0.6", host="10.1.0.6", port=8080, concurrency=4),
        )
        changes = len(recorder.changes)
        running.slice_event("MODIFIED", endpoint_slice("hello-a", "hello", "10.1.0.5"))
        assert len(recorder.changes) == changes, "an unchanged slice must not notify"

        running.slice_event("MODIFIED", endpoint_slice("hello-a", "hello", "10.1.0.5", ready=False))
        running.slice_event("DELETED", endpoint_slice("hello-b", "hello"))
        assert running.ready_instances(HELLO) == ()
        assert recorder.changes[-1] == (HELLO, ())
        assert all(key == HELLO and isinstance(key, FunctionKey) for key, _ in recorder.changes)

    asyncio.run(scenario())


def test_a_slice_that_changes_hands_leaves_its_former_function() -> None:
    # Each Function's slices are indexed (a change looks at its own Function's slices alone):
    # the index follows a slice that moves, and one that goes.
    async def scenario() -> None:
        recorder = Recorder()
        running = platform(recorder)
        running.function_event("ADDED", FUNCTION)
        running.function_event(
            "ADDED", {**FUNCTION, "metadata": {"name": "other", "namespace": "ns"}}
        )
        running.slice_event("ADDED", endpoint_slice("s", "hello", "10.1.0.5"))
        running.slice_event("ADDED", endpoint_slice("t", "hello", "10.1.0.6"))
        running.slice_event("MODIFIED", endpoint_slice("s", "other", "10.1.0.5"))
        other = FunctionKey("ns", "other")
        assert [i.host for i in running.ready_instances(HELLO)] == ["10.1.0.6"]
        assert [i.host for i in running.ready_instances(other)] == ["10.1.0.5"]
        running.slice_event("DELETED", endpoint_slice("t", "hello"))
        running.slice_event("DELETED", endpoint_slice("s", "other"))
        assert running.ready_instances(HELLO) == running.ready_instances(other) == ()
        assert not running._slices_of

    asyncio.run(scenario())


def test_specs_follow_functions_and_triggers_and_invalid_ones_are_left_out() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        running = await hello_served(recorder)
        assert recorder.specs[-1] == (["hello"], ["hello-http"])
        broken = {**TRIGGER, "spec": {"function": "hello", "http": {"path": "no-slash"}}}
        running.trigger_event("MODIFIED", broken)
        await asyncio.sleep(0)
        assert recorder.specs[-1] == (["hello"], [])
        running.function_event("DELETED", FUNCTION)
        await asyncio.sleep(0)
        assert recorder.specs[-1] == ([], [])

    asyncio.run(scenario())


def test_a_change_of_status_alone_is_no_change_of_specs() -> None:
    """The controller's status, the autoscaler's decisions and the scheduler's ticks are
    written to the objects the gateway watches: at 15,000 Functions each event it took for a
    change cost it 5 ms of CPU (benchmarks/scale_gateway_routes.py)."""

    async def scenario() -> None:
        recorder = Recorder()
        running = await hello_served(recorder)
        assert len(recorder.specs) == 1
        with_status = {**FUNCTION, "status": {"autoscaler": {"desiredReplicas": 1}}}
        running.function_event("MODIFIED", with_status)
        running.trigger_event(
            "MODIFIED", {**TRIGGER, "status": {"lastTick": "2026-12-06T00:00:00Z"}}
        )
        await asyncio.sleep(0)
        assert len(recorder.specs) == 1, "a status write taken for a change of specs"
        more = {**with_status, "spec": {**FUNCTION["spec"], "concurrency": 8}}  # type: ignore[dict-item]
        running.function_event("MODIFIED", more)
        await asyncio.sleep(0)
        assert len(recorder.specs) == 2
        assert [f.concurrency for f in running.functions()] == [8]

    asyncio.run(scenario())


def test_changes_that_arrive_together_rebuild_the_specs_once() -> None:
    # The initial listing of 15,000 Functions must not rebuild the routes 15,000 times.
    async def scenario() -> None:
        recorder = Recorder()
        running = platform(recorder)
        loop = asyncio.get_running_loop()
        names = [f"fn-{n}" for n in range(200)]
        for name in names:  # as the informers post them: queued on the loop
            function = {**FUNCTION, "metadata": {**FUNCTION["metadata"], "name": name}}
            loop.call_soon(running.function_event, "ADDED", function)
        loop.call_soon(running.trigger_event, "ADDED", TRIGGER)
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(recorder.specs) == 1
        assert sorted(recorder.specs[0][0]) == sorted(names)
        assert recorder.specs[0][1] == ["hello-http"]

    asyncio.run(scenario())


def test_wake_goes_to_the_waker() -> None:
    recorder = Recorder()
    asyncio.run(platform(recorder).wake(HELLO, concurrency=3))
    assert recorder.woken == [HELLO]
    assert recorder.concurrencies == [3]


def test_a_pod_the_wake_up_names_serves_at_once_until_a_slice_lists_it() -> None:
    """A warm start's or an announced pod is sent to before the Function's EndpointSlice lists
    it ready (a watch's delivery, or the kubelet's next report, later). Listed as starting it
    still serves as named (it answered moments ago; without this the instance would vanish
    until the probe answers); once listed ready, the slice says (here: then not ready)."""

    async def scenario() -> None:
        recorder = Recorder()
        recorder.named = WarmPod("pod-10.0.0.9", "10.0.0.9", 8080)
        made = platform(recorder)
        made.function_event("ADDED", FUNCTION)
        await made.wake(HELLO, concurrency=1)
        named = (Instance("pod-10.0.0.9", "10.0.0.9", 8080, 4),)
        assert made.ready_instances(HELLO) == named
        assert recorder.changes[-1] == (HELLO, named)
        made.slice_event("ADDED", endpoint_slice("hello-a", "hello", "10.0.0.9", ready=False))
        assert made.ready_instances(HELLO) == named
        made.slice_event("MODIFIED", endpoint_slice("hello-a", "hello", "10.0.0.9"))
        assert made.ready_instances(HELLO) == named
        made.slice_event("MODIFIED", endpoint_slice("hello-a", "hello", "10.0.0.9", ready=False))
        assert made.ready_instances(HELLO) == ()
        made.stop()

    asyncio.run(scenario())


def test_a_named_pod_no_slice_lists_is_forgotten(monkeypatch: Any) -> None:
    monkeypatch.setattr(platform_module, "NAMED_POD_SECONDS", 0.05)

    async def scenario() -> None:
        recorder = Recorder()
        recorder.named = WarmPod("pod-10.0.0.9", "10.0.0.9", 8080)
        made = platform(recorder)
        await made.wake(HELLO, concurrency=1)
        assert len(made.ready_instances(HELLO)) == 1
        await wait_for_async(
            lambda: made.ready_instances(HELLO) == (),
            seconds=2,
            what="the named pod to be forgotten",
        )
        assert recorder.changes[-1] == (HELLO, ())

    asyncio.run(scenario())


def test_a_starting_pod_is_an_instance_once_its_runtime_answers() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        answering: set[str] = set()
        probed: list[tuple[str, int]] = []

        async def probe(host: str, port: int) -> bool:
            probed.append((host, port))
            return host in answering

        running = platform(recorder, probe=probe)
        running.function_event("ADDED", FUNCTION)
        running.slice_event("ADDED", endpoint_slice("hello-a", "hello", "10.1.0.5", ready=False))
        await asyncio.sleep(0.12)
        assert running.ready_instances(HELLO) == ()
        assert probed.count(("10.1.0.5", 8080)) >= 2  # probed again while it does not answer

        answering.add("10.1.0.5")
        await wait_for_async(
            lambda: running.ready_instances(HELLO), seconds=5, what="the answering pod"
        )
        assert running.ready_instances(HELLO) == (
            Instance(id="pod-10.1.0.5", host="10.1.0.5", port=8080, concurrency=4),
        )
        assert recorder.changes[-1][1] == running.ready_instances(HELLO)
        probes = len(probed)
        await asyncio.sleep(0.12)
        assert len(probed) == probes, "an answering pod is not probed any more"

        # The kubelet's report changes nothing; a pod going away is gone at once.
        changes = len(recorder.changes)
        running.slice_event("MODIFIED", endpoint_slice("hello-a", "hello", "10.1.0.5"))
        assert len(recorder.changes) == changes
        gone = endpoint_slice("hello-a", "hello", "10.1.0.5", ready=False)
        gone["endpoints"][0]["conditions"]["terminating"] = True
        running.slice_event("MODIFIED", gone)
        assert running.ready_instances(HELLO) == ()
        running.stop()

    asyncio.run(scenario())


def test_probing_stops_when_the_pod_leaves() -> None:
    async def scenario() -> None:
        recorder = Recorder()

        async def never(host: str, port: int) -> bool:
            return False

        running = platform(recorder, probe=never)
        running.slice_event("ADDED", endpoint_slice("hello-a", "hello", "10.1.0.5", ready=False))
        await asyncio.sleep(0.01)
        assert len(running._probing) == 1
        running.slice_event("DELETED", endpoint_slice("hello-a", "hello"))
        await asyncio.sleep(0.01)
        assert running._probing == {}

    asyncio.run(scenario())
