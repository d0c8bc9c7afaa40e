"""Shared by the benchmark scripts: wrk as the closed-loop load generator, an open-loop one of
our own (a fixed request rate, as wrk2 would), servers on free loopback ports.

Every benchmark measures its reference in the same run and prints ratios, because
absolute figures on these shared 2-core machines move by a factor of two between runs.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httptools

BENCH_BODY = b'{"bench": true}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def need(command: str, package: str) -> str:
    found = shutil.which(command)
    if found is None:
        raise SystemExit(f"{command} is missing: install it with `apt-get install {package}`")
    return found


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    method: str = "POST",
    body: bytes = BENCH_BODY,
) -> float:
    """Requests per second from one wrk run (1 thread); refuses a run with error answers."""
    need("wrk", "wrk")
    lines = [f'wrk.method = "{method}"', 'wrk.headers["Content-Type"] = "application/json"']
    if body:
        lines.append(f"wrk.body = {json.dumps(body.decode())}")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(int(seconds), 1)}s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            start_new_session=True,  # a scheduling group of its own: see `process`
        ).stdout
    finally:
        os.unlink(script.name)
    rate = float(_find(r"Requests/sec:\s+([\d.]+)", output))
    total = int(_find(r"(\d+) requests in", output))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors and int(errors.group(1)) > total * 0.01:
        raise SystemExit(f"{url}: {errors.group(1)} of {total} answers were errors\n{output}")
    return rate


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise SystemExit(f"wrk output without {pattern!r}:\n{text}")
    return found.group(1)


def wait_http(
    url: str, *, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer within {timeout}s")
        time.sleep(0.01)


def scheduling() -> str:
    """How the kernel shares the CPU out between the benchmark's processes, to print."""
    try:
        autogroup = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        autogroup = False
    if autogroup:
        return (
            "each server and the load generator in a session of its own: a scheduling group"
            " each (autogroup), as each pod is a cgroup"
        )
    return "autogroup off: every process of the machine shares the CPU alike"


@contextmanager
def process(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A server, stopped on the way out. In a session of its own, as wrk is: where the kernel
    shares the CPU out by session (autogroup: `scheduling()`), each is then a group of its
    own, as each pod is a cgroup of its own on a node, rather than one group with the
    benchmark and the load generator, sharing one share between them."""
    proc = subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


@dataclass
class OpenLoopRun:
    """What an open-loop run saw: latencies (ms from each request's scheduled time) of the
    answered requests, answers by status, and requests that got no answer."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # seconds after the start
    statuses: Counter[int] = field(default_factory=Counter)
    unanswered: int = 0

    @property
    def failed(self) -> int:
        return self.unanswered + sum(n for status, n in self.statuses.items() if status >= 400)


# Timed runs under way in this process: they share one pause of the collector.
_timing = 0


@contextmanager
def collections_paused() -> Iterator[None]:
    """The load generator's garbage collector paused while it times requests. A timed phase's
    records (tens of thousands of tasks, latencies, answers) made each full collection of a
    load generator a pause of 10 to 41 ms (gc.callbacks in burst.py's process): requests went
    out late and were timed late, the load generator's stall counted as the server's. Reference
    counting still frees what a run lets go of; what is cyclic is collected at the end. Runs
    that overlap (soak_load's mixed load) share the pause: the first collects and pauses, the
    last resumes, so none collects while another times."""
    global _timing
    if _timing == 0:
        gc.collect()
        gc.disable()
    _timing += 1
    try:
        yield
    finally:
        _timing -= 1
        if _timing == 0:
            gc.enable()


async def on_schedule(
    send: Callable[[float, float], Awaitable[None]], *, rate: float, count: int, start: float
) -> None:
    """Start `send(scheduled, sent)` for `count` requests `1 / rate` seconds apart from `start`
    (time.perf_counter), whatever the answers do, and wait for them all; the collector paused
    meanwhile. The loop's timers have millisecond resolution and may wake a little early: a
    request sent before its time is timed from when it was sent (`scheduled` is then `sent`)."""
    tasks = []
    with collections_paused():
        for index in range(count):
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            tasks.append(asyncio.ensure_future(send(min(scheduled, sent), sent)))
        await asyncio.gather(*tasks)


async def open_loop(
    port: int, request: bytes, *, rate: float, seconds: float, warm_connections: int = 16
) -> OpenLoopRun:
    """Send ``rate * seconds`` copies of ``request`` to 127.0.0.1:port on a fixed schedule,
    whatever the answers do (no coordinated omission); a new keep-alive connection is
    opened whenever none is idle."""
    loop = asyncio.get_running_loop()
    idle: list[_Connection] = []
    run = OpenLoopRun()

    async def connection() -> _Connection:
        while idle:
            conn = idle.pop()
            # servers close connections idle past their keep-alive timeout
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        _, protocol = await loop.create_connection(_Connection, "127.0.0.1", port)
        return protocol

    async def one(scheduled: float, _sent: float) -> None:
        try:
            conn = await connection()
        except OSError:
            run.unanswered += 1
            return
        conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(request)
        try:
            status = await asyncio.wait_for(conn.waiter, 60)
        except (ConnectionError, TimeoutError):
            run.unanswered += 1
            return
        now = time.perf_counter()
        run.latencies.append((now - scheduled) * 1000)
        run.finished.append(now - start)
        run.statuses[status] += 1
        idle.append(conn)

    for _ in range(warm_connections):  # warm connections, as a steady client would have
        idle.append(await connection())
    start = time.perf_counter() + 0.05
    run.sent = int(rate * seconds)
    await on_schedule(one, rate=rate, count=run.sent, start=start)
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
