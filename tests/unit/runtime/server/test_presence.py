"""The announcement (server/presence.py): one POST, only once the runtime is ready, against a
recording HTTP server on loopback in this test's event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kubelambda_runtime.server import presence
from kubelambda_runtime.server.presence import Target, parse_url

pytestmark = pytest.mark.anyio

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwb2QifQ.c2lnbmF0dXJl"


@dataclass
class Recorder:
    """An HTTP server that records each request's bytes and answers ``answer`` (or nothing)."""

    answer: bytes | None = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            self.requests.append(head + await reader.readexactly(length))
            if self.answer is None:
                await reader.read()  # a server that never answers, until the client gives up
            else:
                writer.write(self.answer)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    recording = Recorder()
    server = await asyncio.start_server(recording.handle, "127.0.0.1", 0)
    recording.port = server.sockets[0].getsockname()[1]
    async with server:
        yield recording


def environment(port: int) -> dict[str, str]:
    """The variables the operator sets, but the key (``__main__`` hands it over apart)."""
    return {
        "KUBELAMBDA_ANNOUNCE_URL": f"http://127.0.0.1:{port}/announce/team-a/hello",
        "KUBELAMBDA_POD_NAME": "hello-5d8f7c9b6d-x2x7q",
        "KUBELAMBDA_POD_IP": "10.244.0.17",
        "PATH": "/usr/bin",
    }


def expected_request(port: int) -> bytes:
    body = b'{"pod": "hello-5d8f7c9b6d-x2x7q", "ip": "10.244.0.17", "port": 8080}'
    return (
        b"POST /announce/team-a/hello HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{port}\r\n".encode()
        + f"Authorization: Bearer {TOKEN}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n"
        + b"\r\n"
        + body
    )


class Health:
    """A fake pool's health: "initializing" while its one boot runs, then what it is told."""

    def __init__(self) -> None:
        self.status = "initializing"
        self.boot: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __call__(self) -> str:
        return self.status

    def boots(self) -> list[asyncio.Future[Any]]:
        return [self.boot]

    def end(self, status: str) -> None:
        self.status = status
        self.boot.set_result(None)


def announcing(
    env: dict[str, str], health: Health, *, key: str = TOKEN + "\n", **options: Any
) -> asyncio.Task[bool]:
    """The announcement, with ``key`` (by default the token and a newline, stripped before use)."""
    return asyncio.ensure_future(
        presence.announce(env, key=key, port=8080, health=health, boots=health.boots, **options)
    )


async def test_the_request_is_sent_once_the_runtime_is_ready(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    health = Health()
    task = announcing(environment(recorder.port), health)
    await asyncio.sleep(0.05)
    assert recorder.connections == 0 and not task.done()  # nothing while the init runs
    health.end("ready")
    async with asyncio.timeout(5):
        assert await task is True
    assert recorder.requests == [expected_request(recorder.port)]
    assert capsys.readouterr().err == ""


async def test_the_body_is_the_pods_json(recorder: Recorder) -> None:
    health = Health()
    health.end("ready")
    async with asyncio.timeout(5):
        assert await announcing(environment(recorder.port), health) is True
    [sent] = recorder.requests
    assert json.loads(sent.partition(b"\r\n\r\n")[2]) == {
        "pod": "hello-5d8f7c9b6d-x2x7q",
        "ip": "10.244.0.17",
        "port": 8080,
    }


async def test_the_host_is_resolved_while_the_init_runs(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    resolved_while: list[str] = []
    health = Health()
    real = loop.getaddrinfo

    async def getaddrinfo(*args: Any, **kwargs: Any) -> Any:
        resolved_while.append(health.status)
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    task = announcing(environment(recorder.port), health)
    await asyncio.sleep(0.05)
    assert resolved_while == ["initializing"]
    health.end("ready")
    async with asyncio.timeout(5):
        assert await task is True


async def test_a_failed_init_is_never_announced(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    health = Health()
    task = announcing(environment(recorder.port), health)
    health.end("init_failed")
    async with asyncio.timeout(5):
        assert await task is False
    assert recorder.connections == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("missing", [*presence.VARIABLES, presence.KEY])
@pytest.mark.parametrize("how", ["unset", "empty"])
async def test_without_all_four_variables_nothing_happens(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], missing: str, how: str
) -> None:
    env = environment(recorder.port)
    key = TOKEN
    if missing == presence.KEY:
        key = ""  # unset or empty: __main__ hands over "" for both
    elif how == "unset":
        del env[missing]
    else:
        env[missing] = ""
    health = Health()
    health.end("ready")
    async with asyncio.timeout(5):
        assert await announcing(env, health, key=key) is False
    assert recorder.connections == 0
    assert capsys.readouterr().err == ""


async def refused_before_sending(
    env: dict[str, str],
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    *,
    key: str = TOKEN,
) -> str:
    """Announce with a ready runtime; assert nothing was sent; the one stderr line."""
    health = Health()
    health.end("ready")
    async with asyncio.timeout(5):
        assert await announcing(env, health, key=key) is False
    assert recorder.connections == 0
    [line] = capsys.readouterr().err.splitlines()
    return line


@pytest.mark.parametrize(
    "key",
    [
        " \n",
        "two\nlines",
        "with space",
        "ключ",
        "x" * (presence.MAX_TOKEN_BYTES + 1),
    ],
)
async def test_a_key_that_is_not_a_token_is_one_line_and_no_request(
    recorder: Recorder, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    env = environment(recorder.port)
    line = await refused_before_sending(env, recorder, capsys, key=key)
    assert env["KUBELAMBDA_ANNOUNCE_URL"] in line
    assert "KUBELAMBDA_ANNOUNCE_KEY does not hold a token" in line
    assert not key.strip() or key.strip()[:8] not in line  # a secret is never echoed


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"HTTP/1.1 500 Internal Server Error\r\n\r\n", "500 Internal Server Error"),
        (b"HTTP/1.1 401 Unauthorized\r\n\r\n", "401 Unauthorized"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "SSH-2.0"),
        (b"", "IncompleteReadError"),
        (b"HTTP/1.1 200 " + b"x" * 2000, "LimitOverrunError"),
        (None, "no answer within 0.3 s"),
    ],
)
async def test_an_answer_other_than_2xx_is_one_line(
    recorder: Recorder,
    capsys: pytest.CaptureFixture[str],
    answer: bytes | None,
    says: str,
) -> None:
    recorder.answer = answer
    health = Health()
    health.end("ready")
    env = environment(recorder.port)
    async with asyncio.timeout(5):
        assert await announcing(env, health, seconds=0.3) is False
    assert len(recorder.requests) == 1  # sent once, never again
    [line] = capsys.readouterr().err.splitlines()
    assert env["KUBELAMBDA_ANNOUNCE_URL"] in line and says in line


async def test_nobody_listening_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    env = environment(port)
    health = Health()
    health.end("ready")
    async with asyncio.timeout(5):
        assert await announcing(env, health) is False
    [line] = capsys.readouterr().err.splitlines()
    assert env["KUBELAMBDA_ANNOUNCE_URL"] in line and "ConnectionRefusedError" in line


async def test_cancelled_while_waiting_it_ends_without_a_request(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    task = announcing(environment(recorder.port), Health())
    await asyncio.sleep(0.05)
    task.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert recorder.connections == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (
            "http://kubelambda-operator.kubelambda.svc:8082/announce/team-a/hello",
            Target(
                "http://kubelambda-operator.kubelambda.svc:8082/announce/team-a/hello",
                "kubelambda-operator.kubelambda.svc",
                8082,
                "kubelambda-operator.kubelambda.svc:8082",
                "/announce/team-a/hello",
            ),
        ),
        ("http://operator/a/b", Target("http://operator/a/b", "operator", 80, "operator", "/a/b")),
        ("http://[::1]:9/x", Target("http://[::1]:9/x", "::1", 9, "[::1]:9", "/x")),
        ("http://[fd00::2]/x", Target("http://[fd00::2]/x", "fd00::2", 80, "[fd00::2]", "/x")),
        ("http://op:1", Target("http://op:1", "op", 1, "op:1", "/")),
    ],
)
def test_urls_are_parsed(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    "url",
    [
        "https://operator:8082/announce/a/b",
        "operator:8082/announce/a/b",
        "http:///announce/a/b",
        "http://user@operator/announce/a/b",
        "http://operator:http/announce/a/b",
        "http://operator:99999/announce/a/b",
        "http://[::1/x",
        "http://[::1]x/x",
        "http://operator/announce/a b",
        "http://operator/announce/a\r\nX-Injected: 1",
    ],
)
def test_urls_that_are_not_usable_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        parse_url(url)


async def test_an_unusable_url_is_one_line_and_no_request(
    recorder: Recorder, capsys: pytest.CaptureFixture[str]
) -> None:
    env = environment(recorder.port)
    env["KUBELAMBDA_ANNOUNCE_URL"] = env["KUBELAMBDA_ANNOUNCE_URL"].replace("http", "https", 1)
    line = await refused_before_sending(env, recorder, capsys)
    assert "https://127.0.0.1" in line and "only http:// URLs are supported" in line
