"""A lean HTTP/1.1 client from the gateway to function instances: keep-alive pools of raw
asyncio connections (upstreamconnection.py), and the readiness check of one instance.

The invoker sends every invocation through `UpstreamPool.request`; asynchronous delivery
also posts dead letters to URLs with it. General-purpose clients (aiohttp, httpx) cost
several times more per request on this path (docs in benchmarks/gateway_throughput.py).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Final

from kubelambda.connect import first_connection
from kubelambda.gateway.exceptions import InstanceUnavailable, Unavailable, UpstreamFailed
from kubelambda.gateway.heap import give_large_blocks_back
from kubelambda.gateway.upstreamconnection import (
    InstanceKey,
    StaleConnection,
    UpstreamConnection,
    UpstreamResponse,
)

__all__ = ["UpstreamPool", "header_lines", "healthy"]

log = logging.getLogger(__name__)

# The gateway's own resources ran out (descriptors, kernel buffers), not the instance's:
# asyncio's accept loop treats the same errors the same way.
_EXHAUSTED: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# At most one log line this often while connections cannot be opened for that reason.
_EXHAUSTED_LOG_SECONDS: Final = 60.0
# Instances whose request heads are kept (UpstreamPool._heads): emptied when full.
_MAX_HEADS: Final = 4096


class UpstreamPool:
    """Keep-alive connections per (host, port), reused last-in first-out.

    Idle connections older than `idle_seconds` are closed instead of reused, staying
    under the instances' own keep-alive timeout (uvicorn's is 5 s) so that a reused
    connection is rarely one the server is closing; when it is (closed before any byte
    came back), the request is sent once more on a fresh connection.
    """

    def __init__(
        self,
        *,
        idle_seconds: float = 4.0,
        max_idle_per_instance: int = 64,
        max_response_bytes: int = 6 * 1024 * 1024 + 64 * 1024,
        connect_timeout: float = 2.0,
        retry_after_seconds: float = 1.0,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_idle_per_instance = max_idle_per_instance
        self.max_response_bytes = max_response_bytes
        self.connect_timeout = connect_timeout
        self.retry_after_seconds = retry_after_seconds
        self._idle: dict[InstanceKey, list[UpstreamConnection]] = {}
        # Each instance's request line tail and host header, made once (bounded: emptied when full).
        self._heads: dict[InstanceKey, bytes] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._exhausted_logged_at: float | None = None
        self._exhausted_unlogged = 0
        give_large_blocks_back()  # answers of up to 6 MB pass through here

    async def request(
        self,
        *,
        host: str,
        port: int,
        method: bytes,
        target: bytes,
        headers: bytes,
        body: bytes,
        deadline: float | None = None,
        within: float | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> UpstreamResponse:
        """Send one request and return the whole answer, by `deadline` (the loop's clock) or
        `within` seconds from now: one of the two. `headers` are the request's header lines, each
        ending in CRLF (`header_lines`), without Host and Content-Length, which the pool writes.

        Raises InstanceUnavailable when the connection is refused or cannot be made in
        time (nothing was sent), Unavailable (503, Retry-After) when the gateway itself has
        no descriptor or buffer left to connect with, UpstreamTimeout at the deadline,
        UpstreamFailed when the answer breaks off or is not HTTP. Header values must not
        hold CR or LF.
        """
        loop = self._running_loop()
        now = loop.time()
        if within is not None:
            deadline = now + within
        elif deadline is None:
            raise TypeError("UpstreamPool.request needs a deadline or a time (within)")
        key: InstanceKey = (host, port, tls is not None)
        data = self._request_bytes(key, method, target, headers, body)

        for _ in range(2):
            connection = self._take(key, now)
            if connection is None:
                connection = await self._connect(key, loop, deadline, tls)
            waiter: asyncio.Future[UpstreamResponse] | None = None
            response: UpstreamResponse | None = None
            try:
                waiter = connection.send(data, deadline)
                response = await waiter
            except StaleConnection:
                connection.close()  # and try again on another (no `continue` here: mypyc)
            except BaseException:
                # Timed out, cancelled (the client left) or broken: never reuse it.
                connection.close()
                raise
            finally:
                # A failed waiter holds its exception, whose traceback holds this frame, which
                # holds the waiter: a cycle, unless the frame lets go of it.
                connection._waiter = waiter = None
            if response is None:
                now = loop.time()
                continue
            self._give_back(connection, loop.time())
            return response
        raise UpstreamFailed(f"instance {host}:{port} closed two connections before answering")

    def send_now(
        self,
        *,
        host: str,
        port: int,
        method: bytes,
        target: bytes,
        headers: bytes,
        body: bytes,
        within: float,
        then: Callable[[UpstreamResponse | Exception], None],
    ) -> bool:
        """Send one request (plain HTTP) on an idle connection, if one is kept: `then` is
        called once, never before this returns, with the whole answer or why none came in
        `within` seconds (UpstreamTimeout, UpstreamFailed, or StaleConnection: a reused
        connection closed before answering, on which the request may be sent again). False
        when no idle connection is kept: nothing was sent (`request` connects)."""
        loop = self._running_loop()
        now = loop.time()
        key: InstanceKey = (host, port, False)
        data = b""
        while True:
            connection = self._take(key, now)
            if connection is None:
                return False
            data = data or self._request_bytes(key, method, target, headers, body)
            try:
                connection.send_then(data, now + within, _Settle(self, then))
            except StaleConnection:
                connection.close()
                continue
            return True

    def _settled(self, connection: UpstreamConnection, outcome: object) -> None:
        """A `send_now` exchange ended: its connection back to the pool, or closed."""
        if isinstance(outcome, UpstreamResponse):
            self._give_back(connection, self._running_loop().time())
        else:
            connection.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        # Kept while it runs: asyncio.get_running_loop makes a system call (getpid, before
        # Python 3.12). One not running any more means the pool is used from a new loop (tests).
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _request_bytes(
        self,
        key: InstanceKey,
        method: bytes,
        target: bytes,
        headers: bytes,
        body: bytes,
    ) -> bytes:
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= _MAX_HEADS:
                self._heads.clear()
            head = self._heads[key] = b" HTTP/1.1\r\nhost: %s:%d\r\ncontent-length: " % (
                key[0].encode("ascii"),
                key[1],
            )
        return b"".join((method, b" ", target, head, b"%d\r\n" % len(body), headers, b"\r\n", body))

    def _take(self, key: InstanceKey, now: float) -> UpstreamConnection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.closed or now - connection.idle_since > self.idle_seconds:
                connection.close()
                continue
            connection.reused = True
            return connection
        return None

    def _give_back(self, connection: UpstreamConnection, now: float) -> None:
        if not connection.keep_alive or connection.closed or self._closed:
            connection.close()
            return
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= self.max_idle_per_instance:
            connection.close()
            return
        connection.idle_since = now
        idle.append(connection)

    def _forget(self, connection: UpstreamConnection) -> None:
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[connection.key]

    async def _connect(
        self,
        key: InstanceKey,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        tls: ssl.SSLContext | None,
    ) -> UpstreamConnection:
        host, port, _ = key
        budget = min(self.connect_timeout, deadline - loop.time())
        if budget <= 0:
            raise InstanceUnavailable(f"no time left to connect to {host}:{port}")
        extra: dict[str, Any] = {"ssl": tls, "server_hostname": host} if tls is not None else {}
        try:
            async with asyncio.timeout(budget):
                _, protocol = await first_connection(
                    lambda: loop.create_connection(
                        lambda: UpstreamConnection(
                            key,
                            loop,
                            max_response_bytes=self.max_response_bytes,
                            lost=self._forget,
                        ),
                        host,
                        port,
                        **extra,
                    ),
                    discard=lambda made: made[0].close(),
                )
        except TimeoutError as exc:
            raise InstanceUnavailable(
                f"connecting to {host}:{port} took over {budget:.2f}s"
            ) from exc
        except OSError as exc:
            if exc.errno in _EXHAUSTED:
                self._log_exhausted(exc, loop.time())
                # Not the instance's fault: no other instance would fare better, and
                # holding the request would only wait for descriptors other requests hold.
                raise Unavailable(
                    "the gateway cannot open a connection to the function's instance now "
                    f"({exc.strerror or exc}); try again later",
                    retry_after=self.retry_after_seconds,
                ) from exc
            raise InstanceUnavailable(
                f"cannot connect to {host}:{port}: {exc.strerror or exc}"
            ) from exc
        return protocol

    def _log_exhausted(self, exc: OSError, now: float) -> None:
        last = self._exhausted_logged_at
        if last is not None and now - last < _EXHAUSTED_LOG_SECONDS:
            self._exhausted_unlogged += 1
            return
        since = (
            f"; {self._exhausted_unlogged} more since the last report" if last is not None else ""
        )
        log.warning(
            "cannot open connections to instances: %s; answering 503 until some close%s",
            exc.strerror or exc,
            since,
        )
        self._exhausted_logged_at = now
        self._exhausted_unlogged = 0

    async def aclose(self) -> None:
        """Close every idle connection; connections in use close when their exchange ends."""
        self._closed = True
        for idle in list(self._idle.values()):
            for connection in list(idle):
                connection.close()
        self._idle.clear()


def header_lines(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Header (name, value) pairs as the lines `UpstreamPool.request` takes."""
    return b"".join(b"%s: %s\r\n" % header for header in headers)


class _Settle:
    """The callback of one `send_now` exchange: gives its connection back (or closes it), then
    tells the sender. (A class rather than a closure: compiled, a native call.)"""

    __slots__ = ("_pool", "_then")

    def __init__(
        self, pool: UpstreamPool, then: Callable[[UpstreamResponse | Exception], None]
    ) -> None:
        self._pool = pool
        self._then = then

    def __call__(
        self, connection: UpstreamConnection, outcome: UpstreamResponse | Exception
    ) -> None:
        self._pool._settled(connection, outcome)
        self._then(outcome)


HEALTH_TIMEOUT_SECONDS: Final = 1.0  # as the kubelet's readiness probe of a function pod


async def healthy(host: str, port: int, *, path: str = "/healthz") -> bool:
    """Whether an instance answers ``GET path`` with 200 now: the runtime's readiness check,
    made by the gateway for pods the kubelet has not reported ready yet."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request.encode())
            status_line = await reader.readline()
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.split(None, 2)
    return len(parts) >= 2 and parts[1] == b"200"
