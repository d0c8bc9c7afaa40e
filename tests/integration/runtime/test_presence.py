"""A real runtime announces itself (server/presence.py, the announce contract): with the four
variables the operator sets, it POSTs its pod, address and port once it is ready, to a small
recording HTTP server here on loopback; never after a failed init; and a failed announcement
costs it one log line, not its serving."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from support.runtime import INVOKE_PATH, RuntimeProcess
from support.waiting import free_port, wait_for

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2ln"
POD = "hello-5d8f7c9b6d-x2x7q"
HANDLER = "def handler(event, context):\n    return {'hello': event.get('name')}\n"


@dataclass
class Seen:
    """One announcement as the operator received it, and what the runtime it names answered
    when asked at that moment (as a gateway handed the pod would ask it)."""

    head: list[str]
    body: dict[str, object]
    health: dict[str, object] | None = None
    invoked: tuple[int, object] | None = None
    probe_error: str | None = None


async def _probe(seen: Seen, base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        seen.health = (await client.get("/healthz")).json()
        answer = await client.post(INVOKE_PATH, content=b'{"name": "you"}')
        seen.invoked = (answer.status_code, answer.json())


@dataclass
class AnnounceServer:
    """The operator's announce endpoint, on its own event loop in a thread: records each
    request, probes the runtime it names, then answers ``status``."""

    status: int = 204
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")[:-2]
                length = next(
                    int(line.split(":", 1)[1])
                    for line in head
                    if line.lower().startswith("content-length:")
                )
                body = json.loads(await reader.readexactly(length))
                seen = Seen(head, body)
                if self.status < 300:
                    try:
                        await _probe(seen, f"http://{body['ip']}:{body['port']}")
                    except (httpx.HTTPError, ValueError) as exc:
                        seen.probe_error = repr(exc)
                self.seen.append(seen)  # once probed: the test may stop the runtime then
                writer.write(f"HTTP/1.1 {self.status} Status\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
        finally:
            writer.close()

    async def _serve(self, listening: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        listening.set()
        async with server:
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)


@pytest.fixture
def announce_server() -> Iterator[AnnounceServer]:
    server = AnnounceServer()
    listening = threading.Event()
    thread = threading.Thread(target=asyncio.run, args=(server._serve(listening),), daemon=True)
    thread.start()
    assert listening.wait(10), "the announce server did not start"
    yield server
    server.stop()
    thread.join(10)


def announce_env(port: int) -> dict[str, str]:
    """The variables the operator sets; the key ends in a newline, as a Secret made from a file
    may (the runtime strips it)."""
    return {
        "KUBELAMBDA_ANNOUNCE_URL": f"http://127.0.0.1:{port}/announce/team-a/hello",
        "KUBELAMBDA_ANNOUNCE_KEY": TOKEN + "\n",
        "KUBELAMBDA_POD_NAME": POD,
        "KUBELAMBDA_POD_IP": "127.0.0.1",
    }


Start = Callable[..., RuntimeProcess]


def stopped(fn: RuntimeProcess) -> str:
    """Stop the runtime (whatever it would send, it has sent) and return its log."""
    fn.stop()
    log: str = fn.logs()
    return log


def test_a_ready_runtime_announces_itself_once_and_serves_at_once(
    runtime: Start, announce_server: AnnounceServer
) -> None:
    fn = runtime({"app.py": HANDLER}, env=announce_env(announce_server.port))
    port = int(fn.url.rsplit(":", 1)[1])
    wait_for(lambda: announce_server.seen, timeout=20, what="the runtime's announcement")
    log = stopped(fn)
    [seen] = announce_server.seen
    assert seen.head[0] == "POST /announce/team-a/hello HTTP/1.1"
    assert f"Authorization: Bearer {TOKEN}" in seen.head
    assert f"Host: 127.0.0.1:{announce_server.port}" in seen.head
    assert "Content-Type: application/json" in seen.head
    assert seen.body == {"pod": POD, "ip": "127.0.0.1", "port": port}
    # Asked the moment it announced, the runtime is ready and answers an invocation.
    assert seen.probe_error is None
    assert seen.health is not None and seen.health["status"] == "ready"
    assert seen.invoked == (200, {"hello": "you"})
    assert "not announced" not in log


def test_a_runtime_whose_init_failed_does_not_announce(
    runtime: Start, announce_server: AnnounceServer
) -> None:
    fn = runtime({"app.py": "import no_such_module\n"}, env=announce_env(announce_server.port))
    assert fn.client.get("/healthz").json()["status"] == "init_failed"
    # An invocation retries the init (and fails again): time an announcement would have had.
    assert fn.invoke().headers["x-amz-function-error"] == "Unhandled"
    log = stopped(fn)
    assert announce_server.seen == []
    assert "not announced" not in log


def test_without_the_key_a_runtime_serves_and_does_not_announce(
    runtime: Start, announce_server: AnnounceServer
) -> None:
    # The key's Secret is optional: a pod that starts without it waits for its EndpointSlice.
    env = announce_env(announce_server.port)
    del env["KUBELAMBDA_ANNOUNCE_KEY"]
    fn = runtime({"app.py": HANDLER}, env=env)
    answer = fn.invoke(b'{"name": "you"}')
    assert (answer.status_code, answer.json()) == (200, {"hello": "you"})
    log = stopped(fn)
    assert announce_server.seen == []
    assert "not announced" not in log


@pytest.mark.parametrize("operator", ["answers 500", "is not listening"])
def test_a_failed_announcement_is_one_line_and_the_runtime_serves_on(
    runtime: Start, announce_server: AnnounceServer, operator: str
) -> None:
    announce_server.status = 500
    port = announce_server.port if operator == "answers 500" else free_port()
    env = announce_env(port)
    fn = runtime({"app.py": HANDLER}, env=env)

    def lines(log: str) -> list[str]:
        return [line for line in log.splitlines() if "not announced" in line]

    wait_for(lambda: lines(fn.logs()), timeout=20, what="the runtime's line about announcing")
    answer = fn.invoke(b'{"name": "you"}')
    assert (answer.status_code, answer.json()) == (200, {"hello": "you"})
    [line] = lines(stopped(fn))
    assert env["KUBELAMBDA_ANNOUNCE_URL"] in line
    if operator == "answers 500":
        assert "500" in line
        assert len(announce_server.seen) == 1  # and no retry
    else:
        assert "ConnectionRefusedError" in line
