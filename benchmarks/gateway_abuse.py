"""Benchmark: the gateway's memory under abusive clients, against the bounds of its public port.

`kubelambda local` (the gateway in one process, on uvloop as `kubelambda gateway` runs)
serves one function whose answer is as big as its event asks. The gateway process's RSS
(/proc/PID/status VmRSS, and VmHWM reset before each pattern through /proc/PID/clear_refs)
is read at rest, during each pattern of the original findings, and once the pattern's
connections are gone:

1. one connection streaming a 64 MiB request head (bound: 32 KiB, then 431);
2. 85 connections each sending 5.9 MB of a 6 MB body, then nothing (bound: 128 MiB of
   bodies held at once, beyond that 503 with Retry-After; a body within 30 s, else 408);
3. 200 clients asking for a 5 MB answer and never reading it (bound: 128 MiB of answers
   not taken, the longest stalled dropped first; each dropped after 30 s without progress);
4. 300 clients sending their head at one byte a second (bound: a head within 10 s, 408);
5. idle connections up to the connection cap and beyond (bound: 10,000 connections, 503;
   a connection that sends nothing is closed after 10 s, 408).

Printed per pattern: RSS before it, at its peak and after it; peak / the baseline RSS at
rest and peak / the chart's memory limit for the gateway (charts/kubelambda/values.yaml);
the peak of the machine's kernel TCP buffers (not in RSS, but charged to a pod's memory by
cgroup v2); the most connections held at once; the answers seen; how long until the gateway
let each client go. The gateway's timeouts are its real ones (local mode has no flags for
them), so a full run takes about two minutes; --patterns picks some, other flags scale them.

    python benchmarks/gateway_abuse.py [--patterns 1,2,3,4,5] [--header-mib 64]
        [--uploads 85] [--readers 200] [--answer-mb 5] [--slow 300] [--idle 10100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
import yaml

from loadgen import free_port, process, wait_http

HOST = "127.0.0.1"
MiB = 1024 * 1024
CHART_VALUES = Path(__file__).resolve().parents[1] / "charts" / "kubelambda" / "values.yaml"
INVOKE = b"/2015-03-31/functions/big/invocations"
FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {name: big}
spec:
  runtime: python3.12
  handler: app.handler
  memoryMB: 256
  concurrency: 2
  scaling: {maxReplicas: 2}
  code:
    inline:
      files:
        app.py: "def handler(event, context):\\n    return 'x' * event.get('size', 1)\\n"
"""
Ending = tuple[str, float]  # the answer's status (or how the connection ended), seconds


@dataclass
class Outcome:
    """What the clients of one pattern saw: answers, and seconds until each was let go."""

    answers: Counter[str] = field(default_factory=Counter)
    closed_after: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, endings: Iterable[Ending]) -> Outcome:
        for answer, seconds in endings:
            self.answers[answer] += 1
            self.closed_after.append(seconds)
        return self


class Gauge:
    """Samples a process's RSS and descriptors, and the kernel's TCP buffers, in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = self.peak_fds = self.peak_tcp = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def status(self, name: str) -> int:
        """A /proc/PID/status field in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise SystemExit(f"/proc/{self.pid}/status has no {name}")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    @staticmethod
    def tcp() -> int:
        """Bytes in the TCP buffers of every socket of the machine (/proc/net/sockstat)."""
        for line in Path("/proc/net/sockstat").read_text().splitlines():
            if line.startswith("TCP:"):
                fields = line.split()
                return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
        return 0

    def reset(self) -> None:
        # 5: VmHWM back to the current RSS (Linux >= 4.0), so it is this pattern's peak.
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.peak_rss, self.peak_fds, self.peak_tcp = self.status("VmRSS"), self.fds(), self.tcp()

    def peak(self) -> int:
        return max(self.peak_rss, self.status("VmHWM"))

    def _sample(self) -> None:
        tick = 0
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError, SystemExit):
                self.peak_rss = max(self.peak_rss, self.status("VmRSS"))
                self.peak_tcp = max(self.peak_tcp, self.tcp())
                if tick % 5 == 0:  # listing 10,000 descriptors is not free
                    self.peak_fds = max(self.peak_fds, self.fds())
            tick += 1

    def settle(self, fds: int, *, within: float) -> None:
        """Wait until the process holds at most `fds` descriptors (its connections gone)."""
        deadline = time.monotonic() + within
        while self.fds() > fds and time.monotonic() < deadline:
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def status_of(data: bytes) -> str:
    return data[9:12].decode() if data.startswith(b"HTTP/1.") and len(data) >= 12 else ""


def invoke_request(size: int) -> bytes:
    body = json.dumps({"size": size}).encode()
    head = b"POST %s HTTP/1.1\r\nHost: abuse\r\nContent-Length: %d\r\n\r\n" % (INVOKE, len(body))
    return head + body


async def until_closed(sock: socket.socket, started: float) -> Ending:
    """Read the gateway's answer until it closes the connection. Raw reads: a reset keeps
    what arrived before it (a StreamReader would raise at once)."""
    loop, data = asyncio.get_running_loop(), b""
    try:
        while chunk := await loop.sock_recv(sock, 65536):
            data += chunk[: max(0, 64 - len(data))]
    except ConnectionError:
        return status_of(data) or "reset", time.monotonic() - started
    return status_of(data) or "closed", time.monotonic() - started


async def open_watched(port: int) -> tuple[socket.socket, asyncio.Task[Ending]]:
    started = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    except OSError:
        sock.close()
        raise
    return sock, asyncio.create_task(until_closed(sock, started))


async def send(sock: socket.socket, closing: asyncio.Task[Ending], data: bytes, size: int) -> int:
    """Send `data`, then `size` more bytes unless the gateway closes first; bytes sent."""
    loop, sent, chunk = asyncio.get_running_loop(), 0, b"a" * 65536
    with contextlib.suppress(ConnectionError):
        await loop.sock_sendall(sock, data)
        while sent < size and not closing.done():
            await loop.sock_sendall(sock, chunk[: size - sent])
            sent += min(len(chunk), size - sent)
    return sent


async def header_stream(port: int, size: int) -> Outcome:
    sock, closing = await open_watched(port)
    sent = await send(sock, closing, b"GET /big HTTP/1.1\r\nHost: abuse\r\nX-Endless: ", size)
    ending = await closing
    sock.close()
    return Outcome(note=f"{sent / MiB:.2f} of {size / MiB:.0f} MiB sent").add([ending])


async def uploads(port: int, count: int, declared: int, sent: int) -> Outcome:
    head = b"POST %s HTTP/1.1\r\nHost: abuse\r\nContent-Length: %d\r\n\r\n" % (INVOKE, declared)

    async def one() -> Ending:
        sock, closing = await open_watched(port)
        await send(sock, closing, head, sent)
        try:
            return await closing  # ...and then nothing more is sent
        finally:
            sock.close()

    return Outcome().add(await asyncio.gather(*(one() for _ in range(count))))


def non_readers(port: int, count: int, size: int, *, within: float) -> Outcome:
    """Clients with a tiny receive buffer that ask for `size` bytes and never read them: the
    status is peeked at, the end seen as a reset or close, timed from the answer's first
    bytes (the function takes a while to make 200 of them)."""
    clients: dict[int, tuple[socket.socket, float]] = {}
    poller = select.poll()
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, port))
        sock.sendall(invoke_request(size))
        clients[sock.fileno()] = (sock, time.monotonic())
        poller.register(sock, select.POLLIN | select.POLLRDHUP)
    outcome = Outcome(note="closed after: from the answer's first bytes")
    answered: set[int] = set()
    deadline = time.monotonic() + within
    while clients and time.monotonic() < deadline:
        for fd, events in poller.poll(250):
            sock = clients[fd][0]
            if events & select.POLLIN and fd not in answered:
                answered.add(fd)
                clients[fd] = (sock, time.monotonic())
                outcome.answers[status_of(sock.recv(16, socket.MSG_PEEK)) or "?"] += 1
                poller.modify(fd, select.POLLRDHUP)  # unread data keeps POLLIN up
            if events & (select.POLLHUP | select.POLLERR | select.POLLRDHUP):
                ending = "cut off" if events & select.POLLERR else "closed"
                outcome.add([(ending, time.monotonic() - clients.pop(fd)[1])])
                poller.unregister(fd)
                sock.close()
    if clients:
        outcome.answers["still open at the end"] += len(clients)
    for sock, _ in clients.values():
        sock.close()
    return outcome


async def slow_heads(port: int, count: int, *, within: float) -> Outcome:
    head = b"GET /big HTTP/1.1\r\nHost: abuse\r\nX-Slow: " + b"a" * 4096

    async def one() -> Ending:
        sock, closing = await open_watched(port)
        with contextlib.suppress(ConnectionError):
            for byte in head[: int(within)]:
                await asyncio.get_running_loop().sock_sendall(sock, bytes([byte]))
                await asyncio.wait({closing}, timeout=1.0)
                if closing.done():
                    break
        try:
            return await closing
        finally:
            sock.close()

    return Outcome().add(await asyncio.gather(*(one() for _ in range(count))))


async def idle(port: int, count: int, *, asking: int) -> Outcome:
    """`count` connections that send nothing; then the last `asking` send a request."""
    outcome, opened = Outcome(), []
    for start in range(0, count, 500):
        batch = await asyncio.gather(
            *(open_watched(port) for _ in range(start, min(count, start + 500))),
            return_exceptions=True,
        )
        for item in batch:
            if isinstance(item, BaseException):
                outcome.answers[f"connect failed ({type(item).__name__})"] += 1
            else:
                opened.append(item)
    for sock, _ in opened[-asking:]:
        with contextlib.suppress(OSError):
            sock.send(b"GET /big HTTP/1.1\r\nHost: abuse\r\n\r\n")
    outcome.add(await asyncio.gather(*(task for _, task in opened)))
    for sock, _ in opened:
        sock.close()
    outcome.note = f"{len(opened)} connections opened, the last {asking} sent a request"
    return outcome


@dataclass(frozen=True)
class Pattern:
    name: str
    bound: str
    run: Callable[[int], Outcome]


def patterns(args: argparse.Namespace) -> dict[str, Pattern]:
    def run(coroutine: Callable[[int], Coroutine[Any, Any, Outcome]]) -> Callable[[int], Outcome]:
        return lambda port: uvloop.run(coroutine(port))

    answer = int(args.answer_mb * 1_000_000)
    return {
        "1": Pattern(
            f"{args.header_mib} MiB header stream",
            "head <= 32 KiB, else 431 at once",
            run(lambda port: header_stream(port, args.header_mib * MiB)),
        ),
        "2": Pattern(
            f"{args.uploads} unfinished 6 MB bodies",
            "bodies held <= 128 MiB, else 503 + Retry-After; body within 30 s, else 408",
            run(lambda port: uploads(port, args.uploads, 6_000_000, 5_900_000)),
        ),
        "3": Pattern(
            f"{args.readers} x {args.answer_mb:g} MB answers never read",
            "answers not taken <= 128 MiB, the longest stalled dropped first; "
            "each dropped after 30 s without progress",
            lambda port: non_readers(port, args.readers, answer, within=120),
        ),
        "4": Pattern(
            f"{args.slow} heads at 1 byte/s",
            "head within 10 s, else 408",
            run(lambda port: slow_heads(port, args.slow, within=60)),
        ),
        "5": Pattern(
            f"{args.idle} idle connections",
            "<= 10,000 connections, else 503; silent connection closed after 10 s (408)",
            run(lambda port: idle(port, args.idle, asking=args.idle_asking)),
        ),
    }


def chart_limit() -> int:
    """The gateway's memory limit in the Helm chart, in bytes."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    value = str(values["gateway"]["resources"]["limits"]["memory"])
    units = {"Ki": 1024, "Mi": MiB, "Gi": 1024 * MiB}
    return int(value[:-2]) * units[value[-2:]] if value[-2:] in units else int(value)


def invoke(port: int, size: int) -> int:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{INVOKE.decode()}", data=json.dumps({"size": size}).encode()
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        answer.read()
        return int(answer.status)


def seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {max(values):.1f} s" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patterns", default="1,2,3,4,5", help="which, comma-separated")
    parser.add_argument("--header-mib", type=int, default=64)
    parser.add_argument("--uploads", type=int, default=85)
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--answer-mb", type=float, default=5.0)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--idle", type=int, default=10_100, help="default: the cap + 100")
    parser.add_argument("--idle-asking", type=int, default=100)
    args = parser.parse_args()
    # As many descriptors as allowed, for our connections and (inherited) the gateway's.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    args.idle = min(args.idle, hard - 256)
    chosen = [patterns(args)[key] for key in args.patterns.split(",")]
    limit = chart_limit()
    work = tempfile.TemporaryDirectory(prefix="kubelambda-abuse-")
    manifest = Path(work.name) / "big.yaml"
    manifest.write_text(FUNCTION)
    port, admin = free_port(), free_port()
    command = [sys.executable, "-m", "kubelambda.cli", "local", str(manifest)]
    with work, process([*command, "--port", str(port), "--admin-port", str(admin)]) as gateway:
        wait_http(f"http://{HOST}:{admin}/healthz", process=gateway, timeout=60)
        assert invoke(port, 10) == 200  # a first instance, started before the baseline
        gauge = Gauge(gateway.pid)
        time.sleep(1.0)
        baseline = gauge.status("VmRSS")
        print(
            f"gateway: kubelambda local (pid {gateway.pid}, RLIMIT_NOFILE {hard}), baseline RSS "
            f"{baseline / MiB:.1f} MiB; the chart's memory limit {limit / MiB:.0f} MiB"
        )
        print(
            f"{'pattern':<32} {'before':>7} {'peak':>7} {'after':>7} {'peak/base':>9} "
            f"{'peak/limit':>10} {'kernel':>7} {'conns':>6}  closed after (median / max)"
        )
        for pattern in chosen:
            before, fds, tcp = gauge.status("VmRSS"), gauge.fds(), gauge.tcp()
            gauge.reset()
            outcome = pattern.run(port)
            peak, conns, kernel = gauge.peak(), gauge.peak_fds - fds, gauge.peak_tcp - tcp
            gauge.settle(fds + 16, within=60)
            time.sleep(1.0)  # what the allocator gives back, it gives back at once
            after = gauge.status("VmRSS")
            print(
                f"{pattern.name:<32} {before / MiB:>6.0f}M {peak / MiB:>6.0f}M "
                f"{after / MiB:>6.0f}M {peak / baseline:>9.2f} {peak / limit:>10.0%} "
                f"{kernel / MiB:>6.0f}M {conns:>6}  {seconds(outcome.closed_after)}"
            )
            answers = ", ".join(f"{name} x{n}" for name, n in sorted(outcome.answers.items()))
            print(f"    bound: {pattern.bound}")
            print(f"    answers: {answers}" + (f"; {outcome.note}" if outcome.note else ""))
        gauge.close()


if __name__ == "__main__":
    main()
