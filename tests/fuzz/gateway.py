"""A real gateway for the fuzz tests, served on loopback from its own thread and event loop
(Hypothesis drives synchronous tests), with a stand-in instance behind `hello`, short
timeouts so that a hanging client costs little, and a raw-socket client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from kubelambda.commands.serving import create_gateway
from kubelambda.gateway.platform import FakePlatform
from kubelambda.gateway.routing import FunctionEntry, HttpRoute, RoutingTable
from kubelambda.gateway.server import Gateway, ServingAddresses
from kubelambda.gateway.settings import GatewaySettings
from kubelambda.testing.standin import StandIn
from unit.gateway.serving import HELLO

SETTINGS = GatewaySettings(
    invoke_auth=False,
    header_timeout_seconds=0.5,
    body_timeout_seconds=0.5,
    keep_alive_seconds=0.5,
    hold_timeout_seconds=0.5,
    max_body_bytes=64 * 1024,
    max_async_body_bytes=64 * 1024,
)
# The longest an answer may take: a head or a body that stops arriving, then slack for a
# loaded machine. Past it, the gateway hangs.
ANSWER_WITHIN = SETTINGS.header_timeout_seconds + SETTINGS.body_timeout_seconds + 3.0


@dataclass
class Answer:
    """What the gateway sent back on one connection: the first response's status (None: the
    connection closed with no answer), its head and body."""

    status: int | None
    head: bytes = b""
    body: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)


class Errors(logging.Handler):
    """Every ERROR the gateway logs (an unexpected exception answered 500, a crashed task)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Running:
    gateway: Gateway
    addresses: ServingAddresses
    loop: asyncio.AbstractEventLoop
    errors: Errors

    @property
    def port(self) -> int:
        return int(self.addresses.public_url.rsplit(":", 1)[1].rstrip("/"))


@contextlib.contextmanager
def running_gateway() -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    started: dict[str, object] = {}
    ready = threading.Event()
    errors = Errors()
    logging.getLogger("kubelambda").addHandler(errors)
    logging.getLogger("uvicorn").addHandler(errors)

    async def main() -> None:
        standin = StandIn(name="hello", concurrency=64, record=False)
        await standin.start()
        platform = FakePlatform()
        platform.set_instances(HELLO, [standin.instance(concurrency=64)])
        gateway = create_gateway(
            platform=platform,
            routes=RoutingTable(
                functions=[FunctionEntry(HELLO)], routes=[HttpRoute(HELLO, "/hello")]
            ),
            settings=SETTINGS,
        )
        served: asyncio.Future[ServingAddresses] = loop.create_future()
        task = asyncio.create_task(gateway.serve(port=0, admin_port=0, on_ready=served.set_result))
        async with asyncio.timeout(10):
            started["addresses"] = await asyncio.shield(served)
        started["gateway"] = gateway
        ready.set()
        try:
            await task
        finally:
            await standin.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not ready.wait(15):
        raise TimeoutError("the gateway did not start within 15 s")
    gateway = started["gateway"]
    addresses = started["addresses"]
    assert isinstance(gateway, Gateway) and isinstance(addresses, ServingAddresses)
    try:
        yield Running(gateway=gateway, addresses=addresses, loop=loop, errors=errors)
    finally:
        loop.call_soon_threadsafe(gateway.shutdown)
        thread.join(20)
        logging.getLogger("kubelambda").removeHandler(errors)
        logging.getLogger("uvicorn").removeHandler(errors)


def exchange(
    port: int, request: bytes, *, within: float = ANSWER_WITHIN, head: bool = False
) -> tuple[Answer, float]:
    """Send `request` on a new connection; read the first answer (or the close). Returns it
    and the seconds it took; raises TimeoutError when neither came `within` seconds. With
    `head` (a HEAD request), the answer has no body whatever its length says."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=within) as sock:
        # Refused before it was all sent: the answer may still be there.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        received = b""
        deadline = started + within
        while True:
            answer = parse_answer(received, head=head)
            if answer is not None:
                return answer, time.monotonic() - started
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {within} s; got {received[:200]!r}")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                continue
            if not chunk:
                closed = parse_answer(received, closed=True, head=head)
                assert closed is not None, f"an answer cut short: {received[:300]!r}"
                return closed, time.monotonic() - started
            received += chunk


def parse_answer(data: bytes, *, closed: bool = False, head: bool = False) -> Answer | None:
    """The first HTTP/1.1 response in `data` once it is complete; None while it is not; with
    `closed`, an Answer with no status for nothing at all. Fails on anything malformed."""
    if not data:
        return Answer(status=None) if closed else None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        assert not closed, f"the connection closed inside an answer's head: {data[:300]!r}"
        return None
    lines = data[:end].split(b"\r\n")
    version, status, *_ = [*lines[0].split(b" ", 2), b""]
    assert version == b"HTTP/1.1" and status.isdigit() and len(status) == 3, lines[0]
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        assert colon and name and name == name.strip(), f"a malformed answer header {line!r}"
        assert name.lower() not in headers or name.lower() == b"set-cookie", line
        headers[name.lower()] = value.strip()
    length = headers.get(b"content-length")
    assert length is not None and length.isdigit(), f"an answer without a length: {lines}"
    size = 0 if head else int(length)
    body = data[end + 4 : end + 4 + size]
    if len(body) < size:
        assert not closed, f"the connection closed inside an answer's body: {data[:300]!r}"
        return None
    return Answer(status=int(status), head=data[:end], body=body, headers=headers)


def rss_bytes() -> int:
    """This process's resident memory (the gateway runs in it)."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
