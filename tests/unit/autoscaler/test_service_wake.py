"""autoscaler/service.py's wake endpoint: a wake-up of a function at zero also asks for a warm
start, one that has replicas does not, and either way the Deployment is scaled as before; the
answer names the warm start's pod when it serves within a bound, or else the first pod of the
Deployment that announces itself (``POST /announce/NAMESPACE/NAME``), verified."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import pytest

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler import service as service_module
from kubelambda.autoscaler.announce import MAX_VERIFYING
from kubelambda.autoscaler.arrivals import AnnouncementRefused, Instance, VerifyAnnouncement
from kubelambda.autoscaler.decider import Observation
from kubelambda.autoscaler.service import AutoscalerService, WakeEndpoint, WarmStart
from support.waiting import free_port, wait_for_async

FUNCTION = {
    "apiVersion": "kubelambda.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "fn", "namespace": "ns"},
    "spec": {
        "runtime": "python3.12",
        "handler": "app.handler",
        "code": {"inline": {"files": {"app.py": "def handler(e, c):\n    return 1\n"}}},
    },
}
KEY = FunctionKey("ns", "fn")


class NoMetrics:
    async def observe(self, *, now: float) -> Mapping[FunctionKey, Observation]:
        return {}


class Replicas:
    def __init__(self, count: int) -> None:
        self.count = count
        self.scaled: list[int] = []

    def known(self, function: FunctionKey) -> bool:
        return True

    async def refresh(self, function: FunctionKey) -> None:
        pass

    async def report(self, function: FunctionKey, *, desired: int, reason: str) -> None:
        pass

    async def fetch_function(self, function: FunctionKey) -> Mapping[str, Any] | None:
        return FUNCTION

    def replicas(self, function: FunctionKey) -> int:
        return self.count

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None:
        self.count = replicas
        self.scaled.append(replicas)


def leading(
    *, replicas: Replicas, warm_start: WarmStart | None, verify: VerifyAnnouncement | None = None
) -> AutoscalerService:
    """The service as the Lease holder, knowing FUNCTION."""
    service = AutoscalerService(
        source=NoMetrics(),
        replicas=replicas,
        hold_lease=lambda: asyncio.sleep(0, True),
        wake=WakeEndpoint(),
        warm_start=warm_start,
        verify=verify,
    )
    service.leading = True
    service.function_event("ADDED", FUNCTION)
    return service


class Verifier:
    """Accepts every announcement, or refuses each with ``refusal``; records what it was asked."""

    def __init__(self, refusal: AnnouncementRefused | None = None) -> None:
        self.refusal = refusal
        self.asked: list[dict[str, Any]] = []

    async def __call__(
        self, *, token: str, function: FunctionKey, pod: str, ip: str, source_ip: str
    ) -> None:
        self.asked.append(
            {"token": token, "function": function, "pod": pod, "ip": ip, "source_ip": source_ip}
        )
        if self.refusal is not None:
            raise self.refusal


async def post(
    app: Callable[[Any, Any, Any], Awaitable[None]],
    path: str,
    *,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[str, Any]]:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": body}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": headers or [],
        "client": ("10.0.0.9", 41000),
    }
    await app(scope, receive, send)
    return int(sent[0]["status"]), json.loads(sent[1]["body"])


async def wake(service: AutoscalerService) -> tuple[int, dict[str, Any]]:
    return await post(service.wake_app, "/wake/ns/fn")


POD = {"pod": "fn-7d9f-x1y2z", "ip": "10.0.0.9", "port": 8080}


async def announce(
    service: AutoscalerService, body: object = POD, *, token: str | None = "pod-token"
) -> tuple[int, dict[str, Any]]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert service.announce_app is not None
    return await post(service.announce_app, "/announce/ns/fn", body=raw, headers=headers)


@pytest.mark.parametrize(("replicas", "warm_starts", "scaled"), [(0, [KEY], [1]), (2, [], [])])
def test_a_wake_up_at_zero_asks_for_a_warm_start_and_still_scales(
    replicas: int, warm_starts: list[FunctionKey], scaled: list[int]
) -> None:
    asked: list[FunctionKey] = []
    target = Replicas(replicas)

    async def body() -> None:
        service = leading(replicas=target, warm_start=asked.append)
        assert await wake(service) == (202, {"replicas": max(replicas, 1)})

    asyncio.run(body())
    assert asked == warm_starts
    assert target.scaled == scaled


def test_a_failing_warm_start_leaves_the_deployment_path() -> None:
    target = Replicas(0)

    def broken(function: FunctionKey) -> None:
        raise RuntimeError("the pool is away")

    async def body() -> tuple[int, dict[str, Any]]:
        service = leading(replicas=target, warm_start=broken)
        return await wake(service)

    assert asyncio.run(body()) == (202, {"replicas": 1})
    assert target.scaled == [1]


def test_the_answer_names_the_pod_a_warm_start_made_and_the_deployment_scales_after_it() -> None:
    """The gateway sends to the named pod at once; the /scale read and the scale-up come after
    the answer (a trip to the API server, and a pod's start sharing the cores with the
    specialisation), and still come."""
    order: list[str] = []

    class Recorded(Replicas):
        async def refresh(self, function: FunctionKey) -> None:
            order.append("refresh")

    async def warm() -> Instance | None:
        return Instance(pod="pool-abc", ip="10.0.0.7", port=8080)

    def start(function: FunctionKey) -> asyncio.Future[Instance | None]:
        order.append("warm start")
        return asyncio.ensure_future(warm())

    target = Recorded(0)

    async def body() -> None:
        service = leading(replicas=target, warm_start=start)
        assert await wake(service) == (
            202,
            {"replicas": 0, "instance": {"pod": "pool-abc", "ip": "10.0.0.7", "port": 8080}},
        )
        assert order == ["warm start"]
        await wait_for_async(lambda: target.scaled == [1], seconds=2, what="the scale-up")
        assert order == ["warm start", "refresh"]

    asyncio.run(body())


def test_a_slow_warm_start_is_not_waited_for_nor_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "WARM_ANSWER_SECONDS", 0.01)
    release = asyncio.Event()

    async def warm() -> Instance | None:
        await release.wait()
        return Instance(pod="pool-abc", ip="10.0.0.7", port=8080)

    async def body() -> None:
        task = asyncio.ensure_future(warm())
        service = leading(replicas=Replicas(0), warm_start=lambda function: task)
        assert await wake(service) == (202, {"replicas": 1})
        release.set()
        # It went on after the answer.
        assert await task == Instance("pool-abc", "10.0.0.7", 8080)

    asyncio.run(body())


def test_a_wake_up_from_zero_is_answered_with_the_first_pod_that_announces_itself() -> None:
    """The Deployment path: the kubelet would report the pod up to a second later."""
    verify = Verifier()
    target = Replicas(0)

    async def body() -> None:
        service = leading(replicas=target, warm_start=None, verify=verify)
        waking = asyncio.ensure_future(wake(service))
        await wait_for_async(lambda: target.scaled == [1], seconds=2, what="the scale-up")
        assert not waking.done()
        assert await announce(service) == (202, {"pod": POD["pod"]})
        assert await asyncio.wait_for(waking, 2) == (202, {"replicas": 1, "instance": POD})
        # Another gateway's wake-up, the Function no longer at zero: the pod at once.
        assert await wake(service) == (202, {"replicas": 1, "instance": POD})

    asyncio.run(body())
    assert verify.asked == [
        {
            "token": "pod-token",
            "function": KEY,
            "pod": POD["pod"],
            "ip": POD["ip"],
            "source_ip": "10.0.0.9",
        }
    ]


def test_a_wake_up_from_zero_waits_for_an_announcement_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "ANNOUNCED_ANSWER_SECONDS", 0.05)

    async def body() -> None:
        service = leading(replicas=Replicas(0), warm_start=None, verify=Verifier())
        assert await asyncio.wait_for(wake(service), 2) == (202, {"replicas": 1})

    asyncio.run(body())


@pytest.mark.parametrize(
    ("body", "token", "refusal", "status"),
    [
        (POD, None, None, 401),
        (b"not json", "pod-token", None, 400),
        ({"pod": "p", "ip": "10.0.0.9"}, "pod-token", None, 400),
        ({**POD, "ip": "ten.zero.zero.nine"}, "pod-token", None, 400),
        ({**POD, "port": 70000}, "pod-token", None, 400),
        ({**POD, "port": "8080"}, "pod-token", None, 400),
        (b"{" + b" " * 5000 + b"}", "pod-token", None, 400),
        (POD, "pod-token", AnnouncementRefused(401, "not that pod's token"), 401),
        (POD, "pod-token", AnnouncementRefused(403, "not fn's pod"), 403),
        (POD, "pod-token", AnnouncementRefused(503, "the API server is away"), 503),
    ],
)
def test_a_refused_announcement_says_why_and_serves_no_wake_up(
    body: object,
    token: str | None,
    refusal: AnnouncementRefused | None,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "ANNOUNCED_ANSWER_SECONDS", 0.05)

    async def check() -> None:
        service = leading(replicas=Replicas(0), warm_start=None, verify=Verifier(refusal))
        waking = asyncio.ensure_future(wake(service))
        await wait_for_async(lambda: service._arrivals.expected(KEY), seconds=2, what="a wake")
        answer = await announce(service, body, token=token)
        assert answer[0] == status
        assert answer[1]["message"]
        assert await waking == (202, {"replicas": 1})

    asyncio.run(check())


def test_announcements_need_a_verifier_and_the_leader() -> None:
    verify = Verifier()

    async def body() -> None:
        without = leading(replicas=Replicas(0), warm_start=None)
        assert without.announce_app is None
        assert (await post(without.wake_app, "/announce/ns/fn"))[0] == 404  # not on the wake port
        standing_by = leading(replicas=Replicas(0), warm_start=None, verify=verify)
        standing_by.leading = False
        assert (await announce(standing_by))[0] == 503

    asyncio.run(body())
    assert verify.asked == []


def test_verifications_at_once_are_bounded() -> None:
    """The announcement port is open to any address: made-up tokens must not become a flood of
    requests to the API server."""
    release = asyncio.Event()
    started = 0

    async def slow(**_: Any) -> None:
        nonlocal started
        started += 1
        await release.wait()

    async def body() -> None:
        service = leading(replicas=Replicas(0), warm_start=None, verify=slow)
        waking = asyncio.ensure_future(wake(service))  # a scale from zero: announcements count
        await wait_for_async(lambda: service._arrivals.expected(KEY), seconds=2, what="a wake")
        held = [asyncio.ensure_future(announce(service)) for _ in range(MAX_VERIFYING)]
        await wait_for_async(lambda: started == MAX_VERIFYING, seconds=2, what="verifications")
        assert await announce(service) == (503, {"message": "too many announcements at once"})
        release.set()
        assert [status for status, _ in await asyncio.gather(*held)] == [202] * MAX_VERIFYING
        assert (await waking)[1]["instance"] == POD

    asyncio.run(body())


def test_an_announcement_no_wake_up_waits_for_costs_the_api_server_nothing() -> None:
    """A scale-up beyond the first pod, or a restarted pod: nobody waits for it."""
    verify = Verifier()

    async def body() -> None:
        service = leading(replicas=Replicas(2), warm_start=None, verify=verify)
        assert await announce(service) == (
            202,
            {"pod": None, "message": "no wake-up waits for a pod"},
        )
        assert await wake(service) == (202, {"replicas": 2})  # the pod was not recorded

    asyncio.run(body())
    assert verify.asked == []


@pytest.mark.parametrize("holds", [True, False], ids=["leader", "standing by"])
def test_a_stopping_leader_gives_its_lease_up_and_one_standing_by_does_not(holds: bool) -> None:
    """Else a rolling update's new operator waits for the Lease to expire (15 s) before it
    scales anything or takes an announcement."""
    asked: list[bool] = []
    released: list[bool] = []

    async def hold() -> bool:
        asked.append(holds)
        return holds

    async def release() -> None:
        released.append(True)

    service = AutoscalerService(
        source=NoMetrics(),
        replicas=Replicas(0),
        hold_lease=hold,
        release_lease=release,
        wake=WakeEndpoint(host="127.0.0.1", port=free_port()),
        tick_seconds=0.01,
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        running = asyncio.create_task(service.run(stop))
        await wait_for_async(lambda: len(asked) >= 2, seconds=10, what="two ticks")
        assert service.leading is holds
        stop.set()
        await asyncio.wait_for(running, 10)

    asyncio.run(scenario())
    assert released == ([True] if holds else [])
    assert service.leading is False


def test_a_wake_up_carrying_a_burst_scales_out_at_once() -> None:
    """The gateway's requests for a Function with instances, all busy: twice what two take at
    once (or more) is a burst, scaled out now rather than at a tick after Prometheus's scrape."""
    target = Replicas(2)

    async def body() -> tuple[int, dict[str, Any]]:
        service = leading(replicas=target, warm_start=None)
        report = json.dumps({"concurrency": 9, "gateway": "gw-a"}).encode()
        return await post(service.wake_app, "/wake/ns/fn", body=report)

    status, answered = asyncio.run(body())
    assert target.scaled and target.scaled[-1] > 2
    assert (status, answered) == (202, {"replicas": target.scaled[-1]})


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"{not json", "JSON"),
        (b'{"concurrency": -1}', "N a count >= 0"),
        (b'{"concurrency": "9"}', "N a count >= 0"),
        (b"[9]", "N a count >= 0"),
        (b'{"concurrency": 1, "gateway": 7}', '"gateway"'),
        (b" " * 2000, "at most 1024 bytes"),
    ],
)
def test_a_wake_up_with_a_bad_body_is_refused_naming_the_problem(body: bytes, named: str) -> None:
    target = Replicas(0)
    service = leading(replicas=target, warm_start=None)
    status, answered = asyncio.run(post(service.wake_app, "/wake/ns/fn", body=body))
    assert status == 400
    assert named in answered["message"]
    assert target.scaled == []
