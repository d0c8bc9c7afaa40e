"""Overflow through the gateway in front of the real runtime: answered 503 with Retry-After at
once, never held until it times out; and a flood of connections the gateway cannot reach in time,
answered 503 as each is accepted rather than left in (or dropped from) its accept queue. Behaviour
only; the rates are benchmarks/burst.py's."""

from __future__ import annotations

import concurrent.futures
import contextlib
import resource
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvloop

from integration.gateway.conftest import GatewayThread
from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.framing import OVERLOADED_MESSAGE
from kubelambda.gateway.platform import Instance
from kubelambda.gateway.routing import FunctionEntry, HttpRoute
from kubelambda.gateway.settings import GatewaySettings
from support.raw_http import read_answer
from support.runtime import RuntimeProcess, start_runtime, write_code
from support.waiting import wait_for

SLOW = FunctionKey("default", "slow")

APP = """
import time


def handler(event, context):
    time.sleep(0.5)
    return {"statusCode": 200, "body": "done"}
"""

# Refused requests must not have waited. Held, each would wait at least 1.5 s here (three
# 0.5 s invocations ahead of it); at once is well under that, even on a loaded machine.
AT_ONCE = 1.0


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuntimeProcess]:
    process = start_runtime(
        code_dir=write_code(tmp_path / "code", {"app.py": APP}),
        env={"AWS_LAMBDA_FUNCTION_NAME": "slow", "AWS_LAMBDA_FUNCTION_TIMEOUT": "10"},
    )
    yield process
    process.stop()


def serve(gateway: GatewayThread, runtime: RuntimeProcess, settings: GatewaySettings) -> str:
    addresses = gateway.start(
        functions=[FunctionEntry(SLOW, timeout_seconds=10)],
        routes=[HttpRoute(SLOW, "/slow")],
        settings=settings,
    )
    address = urlsplit(runtime.url)
    gateway.set_instances(SLOW, [Instance("runtime", address.hostname or "", address.port or 0, 1)])
    url: str = addresses.public_url
    return url


CLIENT = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=64))


def timed_get(url: str) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    answer = CLIENT.get(url)
    return answer, time.monotonic() - began


def test_a_full_hold_queue_answers_the_next_request_503_with_retry_after_at_once(
    gateway_thread: GatewayThread, runtime: RuntimeProcess
) -> None:
    url = serve(
        gateway_thread,
        runtime,
        GatewaySettings(invoke_auth=False, max_queued_per_function=2, retry_after_seconds=3),
    )
    assert timed_get(f"{url}/slow")[0].status_code == 200  # warm
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        # One runs, two are held: the queue is full.
        taken = [pool.submit(timed_get, f"{url}/slow") for _ in range(3)]
        wait_for(lambda: queued(gateway_thread) == 2, timeout=10, what="two held requests")
        answer, seconds = timed_get(f"{url}/slow")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "3"
        assert "already holds 2 requests" in answer.json()["message"]
        assert seconds < AT_ONCE
        assert [future.result()[0].status_code for future in taken] == [200, 200, 200]


def test_a_warm_function_overflowing_for_long_is_refused_at_once_and_the_held_are_served(
    gateway_thread: GatewayThread, runtime: RuntimeProcess
) -> None:
    # A deep queue: only the time its busy instance would take to reach a request bounds it.
    url = serve(gateway_thread, runtime, GatewaySettings(invoke_auth=False))
    assert timed_get(f"{url}/slow")[0].status_code == 200  # the gateway learns 0.5 s each
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        sent = []
        refused: tuple[httpx.Response, float] | None = None
        deadline = time.monotonic() + 15
        # 5 requests a second against 2 a second served: more arrives than is served.
        while refused is None and time.monotonic() < deadline:
            sent.append(pool.submit(timed_get, f"{url}/slow"))
            time.sleep(0.2)  # the arrival schedule, not a wait for a condition
            refused = next(
                (f.result() for f in sent if f.done() and f.result()[0].status_code == 503), None
            )
        assert refused is not None, "no request was refused while the queue kept growing"
        answer, seconds = refused
        assert answer.headers["retry-after"] == "1"
        assert "is busy" in answer.json()["message"]
        assert seconds < AT_ONCE
        # Those held were not given up: each is served, or refused at once.
        for answer, seconds in (future.result() for future in sent):
            assert answer.status_code == 200 or (answer.status_code == 503 and seconds < AT_ONCE)


def test_a_gateway_running_late_refuses_at_once_then_serves_again(
    gateway_thread: GatewayThread, runtime: RuntimeProcess
) -> None:
    url = serve(gateway_thread, runtime, GatewaySettings(invoke_auth=False))
    assert timed_get(f"{url}/slow")[0].status_code == 200
    loop = gateway_thread.loop

    def hold(times: int) -> None:
        # Callbacks that hold the gateway's loop 1.3 s each, as a flood of requests would:
        # a standing backlog over the 1 s bound, not a single stall.
        time.sleep(1.3)
        if times > 1:
            loop.call_soon(hold, times - 1)

    loop.call_soon_threadsafe(hold, 5)
    refused = wait_for(
        lambda: (answer := timed_get(f"{url}/slow")[0]).status_code == 503 and answer,
        timeout=20,
        what="a request refused while the gateway runs late",
    )
    assert refused.headers["retry-after"] == "1"
    assert "the gateway is overloaded" in refused.json()["message"]
    wait_for(
        lambda: timed_get(f"{url}/slow")[0].status_code == 200,
        timeout=20,
        what="the gateway to take requests again",
    )


def test_a_gateway_running_late_refuses_new_requests_before_routing_them(
    gateway_thread: GatewayThread,
) -> None:
    # No function at all: a request the gateway routed would be 404, so a 503 shows it was
    # refused at its head (connection.py), before routing, authorization or activation.
    url = gateway_thread.start(functions=[]).public_url
    assert timed_get(f"{url}/nowhere")[0].status_code == 404
    loop = gateway_thread.loop

    def hold(times: int) -> None:
        time.sleep(1.3)  # a standing backlog over the 1 s bound, as in the test above
        if times > 1:
            loop.call_soon(hold, times - 1)

    def refused_now() -> httpx.Response | None:
        answer = timed_get(f"{url}/nowhere")[0]
        return answer if answer.status_code == 503 else None

    loop.call_soon_threadsafe(hold, 5)
    refused = wait_for(
        refused_now, timeout=20, what="a request refused at its head while the gateway runs late"
    )
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"
    assert "it takes no new requests now" in refused.json()["message"]
    wait_for(
        lambda: timed_get(f"{url}/nowhere")[0].status_code == 404,
        timeout=20,
        what="the gateway to route requests again",
    )


def queued(gateway: GatewayThread) -> int:
    """Requests the gateway holds for SLOW now, read on the gateway's own loop."""

    async def read() -> int:
        assert gateway.gateway is not None
        load = gateway.gateway.load().get(SLOW)
        return load.queued if load is not None else 0

    return gateway.run(read())


class UvloopGatewayThread(GatewayThread):
    """The gateway on uvloop, as `kubelambda gateway` and `kubelambda local` run it: how a flood
    is accepted (one waiting connection at every turn of the loop, its protocol made as it is
    taken) is the loop's."""

    def __init__(self) -> None:
        super().__init__()
        self.loop.call_soon_threadsafe(self.loop.stop)  # nothing ran on it yet
        self._thread.join(10)
        self.loop.close()
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self._thread.start()


@pytest.fixture
def uvloop_gateway() -> Iterator[GatewayThread]:
    running = UvloopGatewayThread()
    yield running
    running.stop()


FLOOD_REQUEST = b"GET /nowhere HTTP/1.1\r\nhost: gateway\r\n\r\n"
# Connections the gateway may leave waiting to be accepted (overload.py's max_accept_queue), and
# while it sheds a lasting overflow (shedding_accept_queue, for shedding_seconds).
QUEUE_BOUND = 512
SHEDDING_BOUND = 16
SHEDDING_SECONDS = 1.0


def _queued(
    gateway: GatewayThread, connections: int, *, bound: int
) -> tuple[list[socket.socket], set[int], float]:
    """`connections` clients connect while the gateway's loop is stalled, as a flood outrunning
    it would make it. Once it runs again, those it refuses as it accepts them (beyond `bound`
    waiting) are answered before they send anything: waited for. The clients, the descriptors
    of those answered, and when the loop was let run again."""
    addresses = gateway.addresses
    assert addresses is not None
    held, release = threading.Event(), threading.Event()

    def stall() -> None:
        held.set()
        release.wait(30)

    gateway.loop.call_soon_threadsafe(stall)
    assert held.wait(10), "the gateway's loop never ran the stall"
    clients: list[socket.socket] = []
    try:
        for count in range(connections):
            try:
                # Queued by the kernel at once; a handshake it dropped (a full accept queue)
                # would be sent again only after 1 s.
                clients.append(
                    socket.create_connection(
                        (addresses.public_host, addresses.public_port), timeout=0.9
                    )
                )
            except TimeoutError:
                pytest.fail(f"connection {count + 1} was not queued: the accept queue is full")
    finally:
        release.set()
        released = time.monotonic()
    beyond = connections - bound - 1
    answered: set[int] = set()
    poll = select.poll()  # select() takes no descriptor over 1023
    for client in clients:
        poll.register(client, select.POLLIN)
    deadline = time.monotonic() + 10
    while len(answered) < beyond:
        left = deadline - time.monotonic()
        assert left > 0, (
            f"{len(answered)} of the {beyond} connections beyond {bound} waiting were answered "
            "before sending a request: they waited to be read"
        )
        for descriptor, _ in poll.poll(min(left, 0.1) * 1000):
            answered.add(descriptor)
            poll.unregister(descriptor)
    return clients, answered, released


def _answers(clients: list[socket.socket], answered: set[int]) -> list[bytes]:
    """Each client not answered yet sends its request; every client's answer, b"" for none."""
    for client in clients:
        if client.fileno() not in answered:
            with contextlib.suppress(OSError):  # refused meanwhile: its answer is there
                client.sendall(FLOOD_REQUEST)
    deadline = time.monotonic() + 20
    return [read_answer(client, deadline) for client in clients]


def _flood(gateway: GatewayThread, connections: int) -> list[bytes]:
    """A flood (_queued) over the accept queue's bound, and every client's answer."""
    clients, answered, _ = _queued(gateway, connections, bound=QUEUE_BOUND)
    return _answers(clients, answered)


def _need_room_for(connections: int) -> None:
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())  # noqa: SIM115 - read once
    assert somaxconn >= connections, (
        f"net.core.somaxconn is {somaxconn}: no accept queue holds {connections} connections; "
        f"raise it (sysctl -w net.core.somaxconn=4096)"
    )
    descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert descriptors > 2 * connections + 100, (
        f"this process may open {descriptors} files: the clients and the gateway in it need "
        f"{2 * connections + 100} (ulimit -n)"
    )


def _refused_and_routed(answers: list[bytes]) -> tuple[list[bytes], int]:
    """The 503s (each checked: Retry-After, closed, the overload's message) and the count of
    404s (read and routed) among `answers`, every one of which must be either."""
    unanswered = sum(1 for answer in answers if not answer.startswith(b"HTTP/1.1 "))
    refused = [answer for answer in answers if answer.startswith(b"HTTP/1.1 503 ")]
    routed = sum(1 for answer in answers if answer.startswith(b"HTTP/1.1 404 "))
    assert unanswered == 0, f"{unanswered} of {len(answers)} connections got no answer"
    assert len(refused) + routed == len(answers)
    for answer in refused:
        assert b"\r\nretry-after: 1\r\n" in answer
        assert b"\r\nconnection: close\r\n" in answer
        assert OVERLOADED_MESSAGE in answer
    return refused, routed


@pytest.mark.parametrize(
    "connections",
    [QUEUE_BOUND + 200, 2500],
    ids=["over-the-accept-queue-bound", "over-uvicorns-2048-backlog"],
)
def test_a_flood_of_connections_is_queued_and_those_beyond_the_bound_refused_as_accepted(
    uvloop_gateway: GatewayThread, connections: int
) -> None:
    _need_room_for(connections)
    # No function at all: a request the gateway read and routed is 404, so a 503 shows it was
    # refused before it was read.
    uvloop_gateway.start(functions=[])
    answers = _flood(uvloop_gateway, connections)
    refused, routed = _refused_and_routed(answers)
    # Those that waited behind over QUEUE_BOUND others were refused as they were accepted (the
    # flood waited for that); those the gateway reaches in time are served (a reading of the
    # queue lasts 1 ms, so a few more may be refused, not hundreds).
    assert routed >= QUEUE_BOUND // 2, (len(refused), routed)


def test_a_flood_again_within_a_second_is_refused_beyond_16_waiting_as_accepted(
    uvloop_gateway: GatewayThread,
) -> None:
    """The queue went over its bound, came back within it and went over again: a lasting
    overflow, whose clients would each wait behind 512 others for a 503. The second flood's
    clients beyond 16 are refused as they are accepted; the first's were served to 512."""
    connections = QUEUE_BOUND + 100
    _need_room_for(2 * connections)
    uvloop_gateway.start(functions=[])
    first, first_answered, _ = _queued(uvloop_gateway, connections, bound=QUEUE_BOUND)
    drained = time.monotonic()  # those beyond 512 refused: the queue came back within its bound
    _, first_routed = _refused_and_routed(_answers(first, first_answered))
    assert first_routed >= QUEUE_BOUND // 2, first_routed
    second, second_answered, released = _queued(uvloop_gateway, connections, bound=SHEDDING_BOUND)
    assert released - drained < SHEDDING_SECONDS, (
        f"answering the first flood and opening {connections} connections took "
        f"{released - drained:.2f} s: the second flood must come within {SHEDDING_SECONDS} s "
        "of the first to be the same overflow"
    )
    second_refused, second_routed = _refused_and_routed(_answers(second, second_answered))
    assert second_routed <= SHEDDING_BOUND + 1, (len(second_refused), second_routed)
