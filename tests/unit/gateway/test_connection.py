"""gateway/connection.py and the edge's body bounds, through a served gateway and raw sockets:
each abusive client pattern gets its answer at once (431, 408, 503), and is let go; answers
nobody reads are bounded, and their memory goes back to the system."""

from __future__ import annotations

import asyncio
import contextlib
import json
import platform
import select
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest

from kubelambda.gateway import boundedserver
from kubelambda.gateway.routing import FunctionEntry
from kubelambda.gateway.settings import GatewaySettings
from unit.gateway.serving import HELLO, MakeStandIn, StartGateway

pytestmark = pytest.mark.anyio

LIMITS = GatewaySettings(
    invoke_auth=False,
    max_header_bytes=1024,
    max_headers=10,
    header_timeout_seconds=0.3,
    body_timeout_seconds=0.3,
    max_buffered_body_bytes=1000,
    max_connections=4,
)


async def exchange(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send `data`, then read until the gateway closes the connection (or `wait` passes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()


async def until(condition: Callable[[], Awaitable[bool]], *, within: float = 5.0) -> None:
    """Ask `condition` (an exchange with the gateway) again until it holds, at most `within`."""
    async with asyncio.timeout(within):
        while not await condition():
            pass


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


async def test_a_head_over_the_size_limit_is_431(serve: StartGateway) -> None:
    served = await serve(settings=LIMITS)
    # Never finished: the gateway must not wait for the end of an endless header.
    head = b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096
    answer = await exchange(served.addresses.public_port, head)
    assert status(answer) == 431


async def test_too_many_headers_is_431(serve: StartGateway) -> None:
    served = await serve(settings=LIMITS)
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(20))
    answer = await exchange(served.addresses.public_port, b"GET /hello HTTP/1.1\r\n" + headers)
    assert status(answer) == 431


@pytest.mark.parametrize("sent", [b"", b"GET /hello HTTP/1.1\r\nHost"], ids=["silent", "slow"])
async def test_a_head_that_does_not_arrive_in_time_is_408(serve: StartGateway, sent: bytes) -> None:
    served = await serve(settings=LIMITS)
    answer = await exchange(served.addresses.public_port, sent)
    assert status(answer) == 408


async def test_a_body_that_does_not_arrive_in_time_is_408(serve: StartGateway) -> None:
    served = await serve(settings=LIMITS)
    head = b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    answer = await exchange(served.addresses.public_port, head + b"{}")
    assert status(answer) == 408
    assert b"RequestTimeoutException" in answer


async def test_bodies_held_at_once_are_bounded(serve: StartGateway) -> None:
    served = await serve(settings=LIMITS)
    port = served.addresses.public_port
    head = b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 800\r\nConnection: close\r\n\r\n"
    # One upload holds 800 of the 1,000 bytes while it trickles in...
    _, slow = await asyncio.open_connection("127.0.0.1", port)
    slow.write(head + b"{")
    await slow.drain()
    # ...so another of 800 is refused at once, before its body is read.
    refused: list[bytes] = []

    async def refused_at_once() -> bool:
        refused.append(await exchange(port, head, wait=2))
        return status(refused[-1]) == 503

    await until(refused_at_once)
    assert b"retry-after: 1" in refused[-1].lower()
    slow.close()  # the slow one goes, and its bytes with it

    async def taken() -> bool:
        return status(await exchange(port, head + b" " * 800)) == 404  # read, then routed

    await until(taken)


async def test_connections_beyond_the_limit_get_503(serve: StartGateway) -> None:
    served = await serve(settings=LIMITS)
    port = served.addresses.public_port
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    try:
        answer = await exchange(port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", wait=2)
        assert status(answer) == 503
    finally:
        for _, writer in idle:
            writer.close()


async def test_a_client_that_stops_reading_its_answer_is_cut_off(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin(concurrency=2)
    settings = GatewaySettings(invoke_auth=False, write_timeout_seconds=0.3)
    served = await serve(settings=settings, functions=[FunctionEntry(HELLO)])
    served.platform.set_instances(HELLO, [instance.instance()])
    answer_size = 4_000_000
    body = json.dumps({"return": "x" * answer_size}).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that barely reads
    sock.connect(("127.0.0.1", served.addresses.public_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        b"POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    # ...then reads nothing until the gateway resets the connection (after the write timeout
    # it drops the answer it holds), however long the answer took to come on a busy machine.
    poller = select.poll()
    poller.register(sock, select.POLLERR | select.POLLHUP | select.POLLRDHUP)
    async with asyncio.timeout(10):
        while not poller.poll(0):  # noqa: ASYNC110 - nothing signals a reset but the socket
            await asyncio.sleep(0.01)
    received = 0
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(10):
            while chunk := await reader.read(65536):
                received += len(chunk)
    writer.close()
    assert received < answer_size


async def test_a_connection_beyond_the_limit_is_refused_before_it_sends_anything(
    serve: StartGateway,
) -> None:
    served = await serve(settings=LIMITS)
    port = served.addresses.public_port
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    try:
        # Not held for the head timeout (then 408) like the idle ones: 503 at once.
        answer = await exchange(port, b"", wait=2)
        assert status(answer) == 503
        assert b"retry-after: 1" in answer.lower()
    finally:
        for _, writer in idle:
            writer.close()


def ask_for(size: int) -> bytes:
    """An Invoke API request whose answer (from the stand-in) is `size` bytes of JSON string."""
    body = json.dumps({"return": "x" * (size - 2)}).encode()
    return (
        b"POST /2015-03-31/functions/hello/invocations HTTP/1.1\r\nHost: x\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


async def non_reader(port: int, request: bytes) -> socket.socket:
    """A client with a tiny receive buffer that sends `request`, then reads nothing until the
    answer's first bytes have arrived (so the gateway has written it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, request)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    async with asyncio.timeout(10):
        while not poller.poll(0):  # noqa: ASYNC110 - nothing signals that bytes are waiting
            await asyncio.sleep(0.005)
    return sock


async def read_all(sock: socket.socket, *, pause: float = 0.0) -> tuple[int, bool]:
    """Read until the end: (bytes received, whether the connection was reset)."""
    loop = asyncio.get_running_loop()
    received = 0
    try:
        async with asyncio.timeout(20):
            while chunk := await loop.sock_recv(sock, 16384):
                received += len(chunk)
                if pause:
                    await asyncio.sleep(pause)  # a slow reader: its pace is the point
    except ConnectionResetError:
        return received, True
    finally:
        sock.close()
    return received, False


ANSWER = 5_000_000  # more than the loopback kernel takes at once: the gateway must hold some


async def test_unread_answers_over_the_budget_drop_the_longest_stalled_first(
    serve: StartGateway, standin: MakeStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(boundedserver, "MAX_UNREAD_ANSWER_BYTES", 8_000_000, raising=False)
    instance = await standin(concurrency=2)
    # Neither timeout comes into it: the budget alone drops the first answer.
    settings = GatewaySettings(invoke_auth=False, write_timeout_seconds=60, keep_alive_seconds=60)
    served = await serve(settings=settings, functions=[FunctionEntry(HELLO)])
    served.platform.set_instances(HELLO, [instance.instance()])
    port = served.addresses.public_port
    first = await non_reader(port, ask_for(ANSWER))
    second = await non_reader(port, ask_for(ANSWER))  # 10 MB unread > 8 MB: first goes
    received, reset = await read_all(first)
    assert reset and received < ANSWER  # reset: the client learns, the kernel's copy goes
    received, reset = await read_all(second)
    assert not reset
    assert received > ANSWER  # the whole answer, with its head


async def test_a_slow_but_steady_reader_gets_its_whole_answer(
    serve: StartGateway, standin: MakeStandIn
) -> None:
    instance = await standin(concurrency=1)
    # The answer takes the reader longer than both: neither cuts a reader that progresses.
    settings = GatewaySettings(invoke_auth=False, write_timeout_seconds=0.3, keep_alive_seconds=1)
    served = await serve(settings=settings, functions=[FunctionEntry(HELLO)])
    served.platform.set_instances(HELLO, [instance.instance()])
    sock = await non_reader(served.addresses.public_port, ask_for(ANSWER))
    received, reset = await read_all(sock, pause=0.002)  # about 2 s
    assert not reset
    assert received > ANSWER


FREED = """
import ctypes
from kubelambda.gateway.upstream import UpstreamPool

class MallInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo
UpstreamPool()
answer = bytearray(8_000_000)  # a large answer, freed
del answer
before = libc.mallinfo2().arena
answer = bytearray(2_000_000)  # the next one, freed too
del answer
print(libc.mallinfo2().arena - before)
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_memory_of_large_answers_goes_back_to_the_system_once_freed() -> None:
    # glibc's default would keep the second answer's 2 MB in the heap after it is freed (its
    # mmap threshold rose to 8 MB with the first), so RSS would stay at its peak. A fresh
    # process: the allocator's state is per process.
    done = subprocess.run(
        [sys.executable, "-c", FREED], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(done.stdout) < 1_000_000, done.stdout
