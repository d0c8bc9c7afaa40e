"""Load for benchmarks/burst.py: an open loop that keeps each answer's status, Retry-After and
Server-Timing, a closed loop that finds the highest rate the gateway sustains, and a sampler of
a process's memory and of the share of a core it ran.

Beside loadgen.open_loop (which counts statuses only) because the burst's targets need to know,
per answer, how long the gateway held it, whether a 503 said when to come back, and how late
the load generator itself sent it.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httptools

from loadgen import collections_paused, on_schedule, percentile

# Server-Timing of an answer the gateway held: "coldstart;dur=12.3" or "queue;dur=4.5".
_HELD = re.compile(rb"(?:coldstart|queue);dur=([\d.]+)")
_ANSWER_TIMEOUT = 60.0


def request(name: str, port: int) -> bytes:
    """A GET of the HTTP trigger at /`name`, as the load sends it."""
    return f"GET /{name} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `waiter` gets (status, retry-after?, held ms) per answer."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bool, float]] | None = None
        self.status = 0
        self.retry_after = False
        self.held = 0.0
        self.body = b""  # of error answers only: the message says which bound refused it
        # An answer that came before its request was written: the gateway refuses a connection
        # as it accepts it, and the answer can be read while create_connection is returning.
        self.early: tuple[int, bool, float] | None = None
        self.lost: Exception | None = None
        self.answering = False  # some of an answer came since the last request was sent
        self.closing = False  # the last answer said `connection: close`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as exc:
            self.connection_lost(ConnectionError(f"unparsable answer: {exc}"))

    def on_message_begin(self) -> None:
        self.retry_after, self.held, self.body = False, 0.0, b""
        self.answering = True
        self.closing = False

    def on_body(self, body: bytes) -> None:
        if self.status >= 400:
            self.body += body

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"retry-after":
            self.retry_after = True
        elif lowered == b"connection" and b"close" in value.lower():
            self.closing = True  # the gateway closes it after this answer: not to be reused
        elif lowered == b"server-timing":
            found = _HELD.search(value)
            if found:
                self.held = float(found.group(1))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.status, self.retry_after, self.held))
        elif self.waiter is None:
            self.early = (self.status, self.retry_after, self.held)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = ConnectionError("closed")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.lost)

    def ask(self, request: bytes) -> asyncio.Future[tuple[int, bool, float]]:
        """Send `request`; the future gets its answer (at once if it already came)."""
        self.waiter = asyncio.get_running_loop().create_future()
        self.answering = self.early is not None
        if self.early is not None:
            self.waiter.set_result(self.early)
            self.early = None
        elif self.lost is not None:
            self.waiter.set_exception(self.lost)
        else:
            assert self.transport is not None
            self.transport.write(request)
        return self.waiter

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and not self.closing


class _Late:
    """How late this process's event loop runs now (a timer every 10 ms): the load generator
    reading an answer late adds that to the answer's latency, though no server caused it."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._due = 0.0
        self._timer = self._arm()

    def _arm(self) -> asyncio.TimerHandle:
        self._due = self._loop.time() + 0.01
        return self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        self._timer = self._arm()

    def __call__(self) -> float:
        return max(self._loop.time() - self._due, 0.0)

    def close(self) -> None:
        self._timer.cancel()


@dataclass
class Answers:
    """Every answered request of a run, in arrays (ms, or s after the start for `finished`)."""

    sent: int = 0
    unanswered: int = 0
    status: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)  # from the scheduled send time
    # The load generator's own lateness: sending (after the schedule) and reading the answer
    # (its event loop's lag then), both counted in `latency` though no server caused them.
    lag: list[float] = field(default_factory=list)
    connect: list[float] = field(default_factory=list)  # opening a new connection, if one was
    held: list[float] = field(default_factory=list)  # held by the gateway (Server-Timing)
    finished: list[float] = field(default_factory=list)
    retry_after: list[bool] = field(default_factory=list)
    connections: int = 0  # opened during the run
    early: int = 0  # answered as the connection opened, before the request was written
    retried: int = 0  # sent again: the gateway had closed the idle connection it was sent on
    reasons: Counter[str] = field(default_factory=Counter)  # error answers' messages
    seconds: float = 0.0

    @property
    def statuses(self) -> Counter[int]:
        return Counter(self.status)

    @property
    def errors(self) -> int:
        return self.unanswered + sum(1 for s in self.status if s >= 400)

    def where(self, *, status: int | None = None, after: float = 0.0) -> list[int]:
        """Indexes of answers with that status (any: None) finished after `after` s."""
        return [
            i
            for i, (s, at) in enumerate(zip(self.status, self.finished, strict=True))
            if (status is None or s == status) and at > after
        ]

    def p(self, values: list[float], indexes: list[int], q: float) -> float:
        chosen = [values[i] for i in indexes]
        return percentile(chosen, q) if chosen else float("nan")


async def open_loop(
    port: int, request: bytes, *, rate: float, seconds: float, warm_connections: int = 16
) -> Answers:
    """``rate * seconds`` requests on a fixed schedule, whatever the answers do (no
    coordinated omission); a new keep-alive connection whenever none is idle."""
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = []
    run = Answers()
    late = _Late()

    async def connection(*, fresh: bool = False) -> tuple[_Connection, bool]:
        """An idle connection (and False), else (or if `fresh`) a new one (and True)."""
        while idle and not fresh:
            conn = idle.pop()
            if conn.usable:  # the gateway closes idle ones after its keep-alive
                return conn, False
        run.connections += 1
        _, protocol = await loop.create_connection(_Connection, "127.0.0.1", port)
        return protocol, True

    def unanswered(conn: _Connection, why: str) -> None:
        run.unanswered += 1
        run.reasons[f"no answer: {why}"] += 1
        if conn.transport is not None:
            conn.transport.close()

    async def one(scheduled: float, sent: float, *, again: bool = False) -> None:
        try:
            conn, new = await connection(fresh=again)
        except OSError as exc:  # refused, reset, or this process out of descriptors
            run.unanswered += 1
            run.reasons[f"no answer: connecting failed, {exc.strerror or exc}"] += 1
            return
        connected = time.perf_counter()
        run.early += conn.early is not None
        try:
            status, retry_after, held = await asyncio.wait_for(conn.ask(request), _ANSWER_TIMEOUT)
        except ConnectionError:
            if new or conn.answering:
                unanswered(
                    conn,
                    "closed without an answer on a new connection"
                    if new
                    else "closed during its answer",
                )
                return
            # The gateway closed this kept-alive connection idle (its keep-alive ran out) as it
            # was reused, before any answer: sent again on a new connection, as HTTP clients do
            # (RFC 9112, 9.3.1), its latency still counted from the first schedule.
            run.retried += 1
            await one(scheduled, sent, again=True)
            return
        except TimeoutError:
            unanswered(conn, "timed out")
            return
        now = time.perf_counter()
        run.status.append(status)
        run.latency.append((now - scheduled) * 1000)
        run.lag.append((max(sent - scheduled, 0.0) + late()) * 1000)
        run.connect.append((connected - sent) * 1000)
        if status >= 400:
            run.reasons[_reason(status, conn.body)] += 1
        run.held.append(held)
        run.finished.append(now - start)
        run.retry_after.append(retry_after)
        if conn.usable:
            idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()

    for _ in range(warm_connections):  # as a steady client would have
        idle.append((await connection())[0])
    run.connections = 0
    start = time.perf_counter() + 0.05
    run.sent = int(rate * seconds)
    await on_schedule(one, rate=rate, count=run.sent, start=start)
    run.seconds = time.perf_counter() - start
    late.close()
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    return run


def _reason(status: int, body: bytes) -> str:
    """An error answer's status and the start of its message, e.g. '503 the gateway is'."""
    found = re.search(rb'"message":\s*"([^"]{0,40})', body)
    words = found.group(1).decode(errors="replace").split()[:5] if found else []
    return " ".join([str(status), *words])


@dataclass
class Saturation:
    rate: float  # answers per second over the measured window
    p99: float  # ms
    statuses: Counter[int]


async def closed_loop(port: int, request: bytes, *, connections: int, seconds: float) -> Saturation:
    """`connections` clients, each sending its next request as soon as the last is answered:
    the rate at which the gateway answers when it is kept busy, with latency bounded by the
    number of clients."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    end = time.perf_counter() + seconds

    async def client() -> None:
        _, conn = await loop.create_connection(_Connection, "127.0.0.1", port)
        try:
            while time.perf_counter() < end:
                conn.waiter = loop.create_future()
                assert conn.transport is not None
                began = time.perf_counter()
                conn.transport.write(request)
                status, _, _ = await asyncio.wait_for(conn.waiter, _ANSWER_TIMEOUT)
                latencies.append((time.perf_counter() - began) * 1000)
                statuses[status] += 1
                if not conn.usable:
                    _, conn = await loop.create_connection(_Connection, "127.0.0.1", port)
        finally:
            if conn.transport is not None:
                conn.transport.close()

    with collections_paused():
        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return Saturation(
        rate=sum(statuses.values()) / elapsed,
        p99=percentile(latencies, 0.99) if latencies else float("nan"),
        statuses=statuses,
    )


class PeakRss:
    """Samples a process's resident memory every `interval` s between start() and stop()."""

    def __init__(self, pid: int, *, interval: float = 0.05) -> None:
        # Opened once and read again from the start: a load generator out of descriptors
        # (thousands of connections) must not stop the sampling.
        self._status = Path(f"/proc/{pid}/status").open()  # noqa: SIM115 - closed in __exit__
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_kib = 0
        self.first_kib = 0

    def _read(self) -> int:
        self._status.seek(0)
        for line in self._status.read().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self._read())
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self.first_kib = self.peak_kib = self._read()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, self._read())
        self._status.close()


class CoreShare:
    """The share of one core a process ran (user + system) between __enter__ and __exit__: its
    own, not its children's (local mode's instances are its children). A gateway past its own
    capacity runs ~100%; one the machine starves of CPU runs less, and its queues grow all the
    same."""

    def __init__(self, pid: int) -> None:
        self._stat = Path(f"/proc/{pid}/stat")
        self._began = (0.0, 0.0)
        self.share = 0.0

    def _read(self) -> tuple[float, float]:
        fields = self._stat.read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK"), time.monotonic()

    def __enter__(self) -> CoreShare:
        self._began = self._read()
        return self

    def __exit__(self, *_: object) -> None:
        cpu, now = self._read()
        self.share = (cpu - self._began[0]) / max(now - self._began[1], 1e-9)
