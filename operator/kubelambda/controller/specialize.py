"""The one HTTP call to a pool pod: ``POST http://POD_IP:8079/_kubelambda/specialize`` with the
pool's bearer token (docs/contracts.md). The pool manager calls a ``Specializer``;
``HttpSpecializer`` makes the call, ``FakeSpecializer`` answers as a test scripts it (the
integration tests' API server has no kubelet, so their pods never run).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from kubelambda.connect import first_connection

__all__ = [
    "SPECIALIZE_PATH",
    "FakeSpecializer",
    "HttpSpecializer",
    "Specialized",
    "Specializer",
]

SPECIALIZE_PATH: Final = "/_kubelambda/specialize"
MAX_ANSWER: Final = 64 * 1024  # the pod answers a small JSON object


@dataclass(frozen=True)
class Specialized:
    """The pod's answer: its HTTP status (0: no answer, ``body["errorMessage"]`` says why) and
    its JSON body (``{"function","initMs"}`` on 200, ``{"errorType","errorMessage"}`` else)."""

    status: int
    body: Mapping[str, Any]
    # False when no connection was made: the pod has not seen the request (status 0 then).
    reached: bool = True

    @property
    def message(self) -> str:
        text = self.body.get("errorMessage") or self.body.get("message") or ""
        kind = self.body.get("errorType")
        return f"{kind}: {text}" if kind else str(text)


class Specializer(Protocol):
    async def __call__(
        self, *, pod_ip: str, port: int, token: str, body: Mapping[str, Any], deadline: float
    ) -> Specialized:
        """Send ``body`` to the pod; answers within ``deadline`` seconds, never raises (a
        connection that fails or times out is status 0)."""
        ...


Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class HttpSpecializer:
    """HTTP/1.1 over one connection per call: the body is small and the call rare.
    ``open_connection`` is asyncio's (tests pass one that loses a first attempt)."""

    def __init__(self, *, open_connection: Connect = asyncio.open_connection) -> None:
        self._open_connection = open_connection

    async def _connect(
        self, pod_ip: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection, made again when the first attempt's SYN seems lost; a refusal or
        another error is raised at once."""
        return await first_connection(
            lambda: self._open_connection(pod_ip, port), discard=lambda made: made[1].close()
        )

    async def __call__(
        self, *, pod_ip: str, port: int, token: str, body: Mapping[str, Any], deadline: float
    ) -> Specialized:
        data = json.dumps(body, separators=(",", ":")).encode()
        host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
        head = (
            f"POST {SPECIALIZE_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        ).encode()
        connected = False
        try:
            async with asyncio.timeout(deadline):
                reader, writer = await self._connect(pod_ip, port)
                connected = True
                try:
                    writer.write(head + data)
                    await writer.drain()
                    return await _read_answer(reader)
                finally:
                    writer.close()
        except TimeoutError:
            return Specialized(
                0, {"errorMessage": f"no answer within {deadline:g} s"}, reached=connected
            )
        except (OSError, ValueError) as exc:
            problem = "answered badly" if connected else "could not be reached"
            return Specialized(0, {"errorMessage": f"the pod {problem}: {exc}"}, reached=connected)


async def _read_answer(reader: asyncio.StreamReader) -> Specialized:
    status_line = await reader.readline()
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {status_line[:100]!r}")
    length = None
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is not None and length > MAX_ANSWER:
        raise ValueError(f"an answer of {length} bytes")
    raw = (
        await reader.readexactly(length)
        if length is not None
        else await reader.read(MAX_ANSWER)  # Connection: close ends it
    )
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"errorMessage": raw[:200].decode(errors="replace")}
    return Specialized(int(parts[1]), decoded if isinstance(decoded, dict) else {})


@dataclass
class FakeSpecializer:
    """Answers ``answers`` in turn (the last one again when they run out), recording each call
    as (pod_ip, token, body); ``delay`` seconds before each answer."""

    answers: list[Specialized] = field(
        default_factory=lambda: [Specialized(200, {"function": "", "initMs": 1})]
    )
    delay: float = 0.0
    calls: list[tuple[str, str, Mapping[str, Any]]] = field(default_factory=list)

    async def __call__(
        self, *, pod_ip: str, port: int, token: str, body: Mapping[str, Any], deadline: float
    ) -> Specialized:
        self.calls.append((pod_ip, token, body))
        if self.delay:
            await asyncio.sleep(self.delay)  # stands for the pod's own work
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
