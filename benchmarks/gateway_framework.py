"""Benchmark: what a web framework costs on the gateway's proxying path.

Two minimal proxies do the same work per request (read the request, send a fixed event to
the instance over the gateway's own upstream pool, return the answer): one is a plain
ASGI callable, the other a FastAPI catch-all route. wrk loads each (and the gateway's
real trigger path, for scale) against one stand-in instance in alternating rounds. This
is the measurement behind keeping FastAPI off the public port.

    python benchmarks/gateway_framework.py [--seconds 3] [--rounds 2] [--connections 32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from gateway_common import gateway, sample_event, standin, wrk
from loadgen import free_port, process, wait_http

PROXIES = """
import asyncio, sys
from kubelambda.gateway.upstream import UpstreamPool

INSTANCE = int(sys.argv[-1])
EVENT = open(sys.argv[-2], "rb").read()
TARGET = b"/2015-03-31/functions/function/invocations"
pool = UpstreamPool()


async def forward():
    loop = asyncio.get_running_loop()
    return await pool.request(
        host="127.0.0.1", port=INSTANCE, method=b"POST", target=TARGET,
        headers=b"content-type: application/json\r\n", body=EVENT,
        deadline=loop.time() + 30,
    )


async def plain(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    answer = await forward()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", b"%d" % len(answer.body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def framework():
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def proxy(path: str, request: Request) -> Response:
        await request.body()
        answer = await forward()
        return Response(content=answer.body, media_type="application/json")

    return app
"""


def serve(work: Path, app: str, instance: int, event: Path) -> tuple[list[str], int]:
    """The command running `app` (from proxies.py) on uvicorn, and the port it listens on."""
    port = free_port()
    code = (
        "import sys, uvicorn; sys.path.insert(0, sys.argv[1]); import proxies; "
        f"uvicorn.run({app}, port={port}, loop='uvloop', http='httptools', lifespan='off', "
        "access_log=False, log_level='warning')"
    )
    return [sys.executable, "-c", code, str(work), str(event), str(instance)], port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
    (work / "proxies.py").write_text(PROXIES)
    event = work / "event.json"
    event.write_bytes(sample_event())
    urls = {}
    with ExitStack() as stack:
        instance = stack.enter_context(standin())
        for name, app in (("plain ASGI", "proxies.plain"), ("FastAPI", "proxies.framework()")):
            command, port = serve(work, app, instance, event)
            proc = stack.enter_context(process(command))
            wait_http(f"http://127.0.0.1:{port}/", process=proc)
            urls[name] = f"http://127.0.0.1:{port}/hello"
        urls["gateway trigger"] = (
            f"http://127.0.0.1:{stack.enter_context(gateway(instance, concurrency=1024))}/hello"
        )
        for url in urls.values():
            wrk(url, connections=args.connections, seconds=1)
        rates: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                rates[name].append(
                    wrk(url, connections=args.connections, seconds=args.seconds)["rate"]
                )
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(
        f"stand-in instance; wrk -t1 -c{args.connections}, {args.rounds} x {args.seconds}s, medians"
    )
    for name, rate in median.items():
        print(f"  {name:<16} {rate:>9,.0f} req/s  {rate / median['plain ASGI']:.2f} of plain ASGI")


if __name__ == "__main__":
    main()
