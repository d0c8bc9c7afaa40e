"""Benchmark: instructions per proxied request of the gateway and of nginx, counted by valgrind's
callgrind, so the figure does not move with the load of a shared machine as CPU time does.

One stand-in instance (kubelambda.testing.standin, not counted) serves everything. The gateway
(benchmarks/gateway_server.py) and nginx (one process, keep-alive upstream, as in
gateway_throughput.py) each run under callgrind with instrumentation off while they start and
warm up; then the counters are zeroed, a fixed number of requests is sent over a fixed number
of keep-alive connections, and the instructions counted are dumped and divided by the
requests. Paths: nginx proxying the invoke request; the gateway's HTTP trigger (GET /hello:
event built, response mapped); its Invoke API (POST /2015-03-31/functions/hello/invocations).
Printed: instructions per request of each, and the gateway's over nginx's (issue 17 asks for
CPU per request <= 2x nginx's). Beside them, benchmarks/bare_proxy.py ("python floor"): nginx's
job in the least Python on uvloop and httptools, with nothing else a gateway does, so that what
any data path in Python costs reads apart from what the gateway adds to it. The event loop's
own timers run meanwhile and are counted too (a few thousand instructions every 50 ms): with
the default requests that is under 1%.

    python benchmarks/gateway_instructions.py [--requests 2000] [--connections 16] [--warm 200]
        [--interpreted]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httptools
import uvloop

from gateway_common import (
    PIDS,
    add_interpreted,
    bare_proxy,
    gateway,
    gateway_form,
    nginx,
    sample_event,
    standin,
)
from gateway_throughput import GATEWAY_INVOKE_PATH, http_request
from loadgen import need

# Python under callgrind runs some 50 times slower: its start takes a while.
START_SECONDS = 600.0


class _Client(asyncio.Protocol):
    """One keep-alive connection sending one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("the server closed the connection"))

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await asyncio.wait_for(self.waiter, 120)


async def _drive(port: int, request: bytes, *, count: int, connections: int) -> None:
    """Send `request` exactly `count` times over `connections` connections; every answer 200."""
    loop = asyncio.get_running_loop()
    left = count

    async def connection() -> None:
        nonlocal left
        _, client = await loop.create_connection(_Client, "127.0.0.1", port)
        try:
            while left > 0:
                left -= 1
                status = await client.send(request)
                if status != 200:
                    raise SystemExit(f"port {port} answered {status}")
        finally:
            assert client.transport is not None
            client.transport.close()

    await asyncio.gather(*(connection() for _ in range(connections)))


def drive(port: int, request: bytes, *, count: int, connections: int) -> None:
    uvloop.run(_drive(port, request, count=count, connections=connections))


@dataclass(frozen=True)
class Counts:
    """Instructions and system calls a process made in one measurement, and its dump."""

    instructions: int
    syscalls: int
    dump: Path


class Callgrind:
    """Processes started under callgrind (instrumentation off), and their counted instructions."""

    def __init__(self, work: Path) -> None:
        need("valgrind", "valgrind")
        self.work = work

    def wrap(self, name: str) -> list[str]:
        return [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            # System calls counted too (sysCount): the kernel's share of the CPU, which
            # callgrind's instruction count leaves out.
            "--collect-systime=yes",
            f"--callgrind-out-file={self.work}/{name}.%p",
        ]

    def _control(self, pid: int, *options: str) -> None:
        subprocess.run(
            ["callgrind_control", *options, str(pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self, pid: int) -> None:
        """Count from now."""
        self._control(pid, "--instr=on")
        self._control(pid, "--zero")

    def take(self, pid: int, name: str) -> Counts:
        """What was counted since `start`, dumped as `name`; counting stops."""
        before = set(self.work.iterdir())
        self._control(pid, "--dump")
        self._control(pid, "--instr=off")
        dumps = [path for path in set(self.work.iterdir()) - before if path.stat().st_size]
        if len(dumps) != 1:
            raise SystemExit(f"callgrind wrote {len(dumps)} dumps for process {pid}")
        dump = dumps[0].rename(self.work / f"{name.replace(' ', '-')}.callgrind")
        events: list[str] = []
        for line in dump.read_text().splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                totals = dict(zip(events, map(int, line.split()[1:]), strict=False))
                return Counts(totals.get("Ir", 0), totals.get("sysCount", 0), dump)
        raise SystemExit(f"{dump}: no totals")


@contextmanager
def scratch(keep: Path | None) -> Iterator[Path]:
    """A folder for callgrind's files: removed at the end, or its dumps kept in `keep`."""
    path = Path(tempfile.mkdtemp(prefix="kubelambda-callgrind-"))
    try:
        yield path
    finally:
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for dump in path.glob("*.callgrind"):
                shutil.copy(dump, keep / dump.name)
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="counted, per path")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--warm", type=int, default=200, help="uncounted requests first")
    parser.add_argument(
        "--keep", type=Path, help="keep the callgrind dumps here, for callgrind_annotate"
    )
    add_interpreted(parser)
    args = parser.parse_args()
    event = sample_event()
    counts: dict[str, Counts] = {}
    with ExitStack() as stack:
        callgrind = Callgrind(stack.enter_context(scratch(args.keep)))
        instance = stack.enter_context(standin())
        nginx_port = stack.enter_context(
            nginx(instance, wrap=callgrind.wrap("nginx"), timeout=START_SECONDS)
        )
        floor_port = stack.enter_context(
            bare_proxy(instance, wrap=callgrind.wrap("floor"), timeout=START_SECONDS)
        )
        gateway_port = stack.enter_context(
            gateway(
                instance,
                concurrency=1024,
                wrap=callgrind.wrap("gateway"),
                timeout=START_SECONDS,
                compiled=not args.interpreted,
            )
        )
        paths = {
            "nginx": (nginx_port, http_request("POST", "/", nginx_port, event)),
            "python floor": (floor_port, http_request("POST", "/", floor_port, event)),
            "gateway trigger": (gateway_port, http_request("GET", "/hello", gateway_port)),
            "gateway invoke": (
                gateway_port,
                http_request("POST", GATEWAY_INVOKE_PATH, gateway_port, event),
            ),
        }
        for name, (port, request) in paths.items():
            (pid,) = PIDS[port]
            drive(port, request, count=args.warm, connections=args.connections)
            callgrind.start(pid)
            drive(port, request, count=args.requests, connections=args.connections)
            counts[name] = callgrind.take(pid, name)

    print(gateway_form(not args.interpreted))
    print(
        f"per request (callgrind, {args.requests} requests per path over "
        f"{args.connections} keep-alive connections, after {args.warm} uncounted)"
    )
    print(f"  {'path':<16} {'instructions':>12} {'system calls':>13}")
    for name, count in counts.items():
        instructions = count.instructions / args.requests
        print(f"  {name:<16} {instructions:>12,.0f} {count.syscalls / args.requests:>13.2f}")
    nginx_instructions = counts["nginx"].instructions
    floor_instructions = counts["python floor"].instructions
    for name in ("gateway trigger", "gateway invoke"):
        ratio = counts[name].instructions / nginx_instructions
        over_floor = counts[name].instructions / floor_instructions
        print(f"  {name} / nginx, instructions: {ratio:.2f}  (/ python floor: {over_floor:.2f})")
    print(
        f"  python floor / nginx, instructions: {floor_instructions / nginx_instructions:.2f}"
        " (bare_proxy.py: nginx's job in the least Python on uvloop and httptools)"
    )
    print(
        "  (user-space instructions only: the kernel's work per request, about the same per\n"
        "  system call for both, is in the CPU time gateway_throughput.py measures, not here)"
    )
    if args.keep is not None:
        print(f"  dumps in {args.keep}: callgrind_annotate --inclusive=yes FILE")


if __name__ == "__main__":
    main()
