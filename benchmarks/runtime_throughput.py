"""Benchmark: no-op invocation throughput of the runtime / a bare uvicorn ASGI app, same load.

Both servers run side by side on loopback; wrk (1 thread) loads each in alternating
rounds at the same connection count; the median of the per-round ratios is printed,
with the CPU each server's processes spent per request. The runtime is given as many
execution slots as wrk has connections, so no request is refused. Target: ratio >= 0.5.

    python benchmarks/runtime_throughput.py [--seconds 4] [--rounds 3] [--connections 1 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from loadgen import free_port, process, wait_http, wrk

BARE_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})
"""

NOOP_HANDLER = "def handler(event, context):\n    return {}\n"


def _tree(pid: int) -> list[int]:
    """The process and its descendants (the runtime's worker processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found.extend(_tree(int(child)))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in _tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def measure(url: str, pid: int, *, connections: int, seconds: int) -> tuple[float, float]:
    """Requests/s, and CPU µs per request of the server's processes."""
    before = cpu_seconds(pid)
    rate = wrk(url, connections=connections, seconds=seconds)
    used = cpu_seconds(pid) - before
    return rate, used / (rate * seconds) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    (work / "bare.py").write_text(BARE_APP)
    (work / "noop.py").write_text(NOOP_HANDLER)
    print(
        f"{'connections':>11} {'bare uvicorn':>13} {'runtime':>9} {'ratio':>6}"
        f" {'(rounds)':>20}   CPU µs/request bare, runtime"
    )
    for connections in args.connections:
        bare_port, runtime_port = free_port(), free_port()
        bare = [
            sys.executable, "-m", "uvicorn", "bare:app", "--port", str(bare_port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        runtime = [
            sys.executable, "-m", "kubelambda_runtime", "--handler", "noop.handler",
            "--code", str(work), "--host", "127.0.0.1", "--port", str(runtime_port),
            "--concurrency", str(connections),
        ]  # fmt: skip
        with process(bare, cwd=work) as bare_proc, process(runtime) as runtime_proc:
            bare_url = f"http://127.0.0.1:{bare_port}/"
            invoke = f"http://127.0.0.1:{runtime_port}/2015-03-31/functions/function/invocations"
            wait_http(bare_url, process=bare_proc)
            wait_http(f"http://127.0.0.1:{runtime_port}/healthz", process=runtime_proc)
            wrk(invoke, connections=connections, seconds=1)  # warm both
            wrk(bare_url, connections=connections, seconds=1)
            rows = []
            for _ in range(args.rounds):
                # Adjacent runs share the machine's background noise; their ratio cancels it.
                bare_rate, bare_cpu = measure(
                    bare_url, bare_proc.pid, connections=connections, seconds=args.seconds
                )
                runtime_rate, runtime_cpu = measure(
                    invoke, runtime_proc.pid, connections=connections, seconds=args.seconds
                )
                rows.append(
                    (bare_rate, runtime_rate, runtime_rate / bare_rate, bare_cpu, runtime_cpu)
                )
        ratios = sorted(row[2] for row in rows)
        bare_rate = statistics.median(row[0] for row in rows)
        runtime_rate = statistics.median(row[1] for row in rows)
        spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
        bare_cpu = statistics.median(r[3] for r in rows)
        runtime_cpu = statistics.median(r[4] for r in rows)
        print(
            f"{connections:>11} {bare_rate:>11,.0f}/s {runtime_rate:>7,.0f}/s"
            f" {statistics.median(ratios):>6.2f} {spread:>20}   {bare_cpu:.0f}, {runtime_cpu:.0f}"
        )


if __name__ == "__main__":
    main()
