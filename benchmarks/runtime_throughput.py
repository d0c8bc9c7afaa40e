"""Benchmark: no-op invocation throughput of the runtime / a bare uvicorn ASGI app, same load.

Both servers run side by side on loopback; wrk (1 thread) loads each in alternating
rounds at the same connection count, and the ratio of medians is printed. The runtime
is given as many execution slots as wrk has connections, so no request is refused.
Target: ratio >= 0.5.

    python benchmarks/runtime_throughput.py [--seconds 4] [--rounds 3] [--connections 1 4]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    (work / "bare.py").write_text(BARE_APP)
    (work / "noop.py").write_text(NOOP_HANDLER)
    print(f"{'connections':>11} {'bare uvicorn':>13} {'runtime':>9} {'ratio':>6}")
    for connections in args.connections:
        bare_port, runtime_port = free_port(), free_port()
        bare = [
            sys.executable,
            "-m",
            "uvicorn",
            "bare:app",
            "--port",
            str(bare_port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        runtime = [
            sys.executable,
            "-m",
            "kubelambda_runtime",
            "--handler",
            "noop.handler",
            "--code",
            str(work),
            "--host",
            "127.0.0.1",
            "--port",
            str(runtime_port),
            "--concurrency",
            str(connections),
        ]
        with process(bare, cwd=work) as bare_proc, process(runtime) as runtime_proc:
            wait_http(f"http://127.0.0.1:{bare_port}/", process=bare_proc)
            wait_http(f"http://127.0.0.1:{runtime_port}/healthz", process=runtime_proc)
            invoke = f"http://127.0.0.1:{runtime_port}/2015-03-31/functions/function/invocations"
            wrk(invoke, connections=connections, seconds=1)  # warm both
            wrk(f"http://127.0.0.1:{bare_port}/", connections=connections, seconds=1)
            bare_rates, runtime_rates = [], []
            for _ in range(args.rounds):
                bare_rates.append(
                    wrk(
                        f"http://127.0.0.1:{bare_port}/",
                        connections=connections,
                        seconds=args.seconds,
                    )
                )
                runtime_rates.append(wrk(invoke, connections=connections, seconds=args.seconds))
        bare_rate, runtime_rate = statistics.median(bare_rates), statistics.median(runtime_rates)
        ratio = runtime_rate / bare_rate
        print(f"{connections:>11} {bare_rate:>11,.0f}/s {runtime_rate:>7,.0f}/s {ratio:>6.2f}")


if __name__ == "__main__":
    main()
