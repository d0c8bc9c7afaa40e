"""Shared by the gateway benchmarks: the stand-in instance, the gateway and nginx as processes
on free loopback ports, and wrk runs with a chosen method, path and body.

Until a benchmark names the real runtime, the instance behind every proxy is the gateway's
stand-in (kubelambda.testing.standin), a uvicorn app speaking the runtime contract.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import loadgen
from kubelambda.gateway.sources.http_event import build_event
from loadgen import free_port, need, process, wait_http

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from harness.compiled import compiled_site  # noqa: E402 - after the path to it

INVOKE_PATH = "/2015-03-31/functions/function/invocations"
# What the instance returns for every invocation: an HTTP response description, as a
# typical API handler's.
REPLY = {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "hello"}
# Port -> process ids of every server started here, for cpu_seconds().
PIDS: dict[int, list[int]] = {}


def cpu_seconds(port: int) -> float:
    """CPU time (user + system) used so far by the server processes listening on `port`, and
    by their children (the runtime's workers)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            stats[int(entry.name)] = fields
    pids = set(PIDS[port])
    while True:  # and their children's, to any depth
        more = {pid for pid, fields in stats.items() if int(fields[1]) in pids} - pids
        if not more:
            break
        pids |= more
    total = sum(int(stats[pid][11]) + int(stats[pid][12]) for pid in pids if pid in stats)
    return total / os.sysconf("SC_CLK_TCK")


def sample_event() -> bytes:
    """The payload 2.0 event the gateway builds for `GET /hello` from wrk, as JSON."""
    event = build_event(
        method="GET",
        raw_path="/hello",
        raw_query=b"",
        headers=[(b"host", b"127.0.0.1:8080")],
        body=b"",
        source_ip="127.0.0.1",
        route_key="ANY /hello",
        request_id="c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        domain_name="127.0.0.1",
        path_parameters=None,
        now=1_700_000_000.0,
    )
    return json.dumps(event, separators=(",", ":")).encode()


@contextmanager
def standin(*, concurrency: int = 1024) -> Iterator[int]:
    """A stand-in instance process; yields its port."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "kubelambda.testing.standin",
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
        "--reply",
        json.dumps(REPLY),
    ]
    with process(args) as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=proc)
        PIDS[port] = [proc.pid]
        yield port


@contextmanager
def runtime(work: Path, *, concurrency: int) -> Iterator[int]:
    """A real kubelambda_runtime process serving a handler that returns REPLY; yields its port."""
    (work / "bench_handler.py").write_text(f"def handler(event, context):\n    return {REPLY!r}\n")
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "kubelambda_runtime",
        "--handler",
        "bench_handler.handler",
        "--code",
        str(work),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--concurrency",
        str(concurrency),
    ]
    with process(args) as proc:
        wait_http(f"http://127.0.0.1:{port}/healthz", process=proc)
        PIDS[port] = [proc.pid]
        yield port


@contextmanager
def gateway(
    instance_port: int,
    *,
    concurrency: int,
    processes: int = 1,
    wrap: Sequence[str] = (),
    timeout: float = 20.0,
    compiled: bool = True,
) -> Iterator[int]:
    """Gateway processes routing /hello (and the Invoke API's `hello`) to the instance; with
    several, they share the public port (SO_REUSEPORT), each a replica of its own. `wrap` is
    a command each process runs under (valgrind), `timeout` how long each may take to start.
    `compiled`: its request path compiled, as the control-plane image has it (setup.py);
    otherwise the sources as they are."""
    port = free_port()
    env = {}
    if compiled:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, (str(compiled_site()), os.environ.get("PYTHONPATH")))
        )
    with ExitStack() as stack:
        PIDS[port] = []
        for _ in range(processes):
            admin = free_port()
            args = [
                sys.executable,
                str(HERE / "gateway_server.py"),
                "--port",
                str(port),
                "--admin-port",
                str(admin),
                "--instance-port",
                str(instance_port),
                "--concurrency",
                str(concurrency),
                *(["--reuse-port"] if processes > 1 else []),
            ]
            proc = stack.enter_context(process([*wrap, *args], env=env))
            wait_http(f"http://127.0.0.1:{admin}/healthz", process=proc, timeout=timeout)
            PIDS[port].append(proc.pid)
        yield port


@contextmanager
def nginx(instance_port: int, *, wrap: Sequence[str] = (), timeout: float = 20.0) -> Iterator[int]:
    """nginx (Debian's nginx-light) as a keep-alive reverse proxy to the instance's invoke path;
    `wrap` is a command it runs under (valgrind), `timeout` how long it may take to start.

    It sends the invoke contract's headers, as the gateway does (a request id of its own per
    request, a deadline, the function's ARN, both trace headers): the instance reads them and
    builds its context from them, which cost it some 20-30 us per request here, so without
    them the instance behind nginx did less work than behind the gateway on the same cores."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        need("nginx", "nginx-light")
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="kubelambda-nginx-"))
    conf = work / "nginx.conf"
    deadline_ms = int((time.time() + 86400) * 1000)  # a day away: never reached
    conf.write_text(f"""
worker_processes 1;
# One process doing all the work, like the gateway, so CPU per request compares directly.
master_process off;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  upstream instance {{ server 127.0.0.1:{instance_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://instance{INVOKE_PATH};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Lambda-Runtime-Aws-Request-Id $request_id;
      proxy_set_header Lambda-Runtime-Deadline-Ms {deadline_ms};
      proxy_set_header Lambda-Runtime-Invoked-Function-Arn {ARN};
      proxy_set_header X-Amzn-Trace-Id "{XRAY}";
      proxy_set_header Traceparent {TRACEPARENT};
    }}
  }}
}}
""")
    with process([*wrap, binary, "-p", str(work), "-c", str(conf)]) as proc:
        wait_port(port, process=proc, timeout=timeout)
        PIDS[port] = [proc.pid]
        yield port
    shutil.rmtree(work, ignore_errors=True)


@contextmanager
def bare_proxy(
    instance_port: int, *, wrap: Sequence[str] = (), timeout: float = 20.0
) -> Iterator[int]:
    """benchmarks/bare_proxy.py in front of the instance: nginx's job in the least Python on
    uvloop and httptools, the floor a data path in Python starts from."""
    port = free_port()
    args = [
        sys.executable,
        str(HERE / "bare_proxy.py"),
        "--port",
        str(port),
        "--instance-port",
        str(instance_port),
    ]
    with process([*wrap, *args]) as proc:
        wait_port(port, process=proc, timeout=timeout)
        PIDS[port] = [proc.pid]
        yield port


# What nginx sends in the invoke contract's headers: the gateway's ARN for `hello`, and a trace.
ARN = "arn:aws:lambda:us-east-1:000000000000:function:hello"
XRAY = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
TRACEPARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00"


def wait_port(port: int, *, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Return once 127.0.0.1:port accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on port {port} after {timeout}s") from None
        time.sleep(0.01)


def wrk(
    url: str, *, method: str = "GET", body: bytes = b"", connections: int, seconds: int
) -> dict[str, float]:
    """One wrk run (1 thread): requests/s; refuses a run with error answers."""
    return {
        "rate": loadgen.wrk(url, method=method, body=body, connections=connections, seconds=seconds)
    }


@dataclass(frozen=True)
class Proxies:
    """The ports of one instance and of the gateway and nginx in front of it."""

    instance: int
    gateway: int
    nginx: int


def proxies(
    stack: ExitStack, *, real_runtime: bool, concurrency: int, compiled: bool = True
) -> Proxies:
    """Start the instance (the real runtime with `concurrency` slots, or the stand-in), a
    gateway (`compiled` or not) and nginx in front of it, all stopped with `stack`."""
    if real_runtime:
        work = Path(tempfile.mkdtemp(prefix="kubelambda-bench-"))
        instance = stack.enter_context(runtime(work, concurrency=concurrency))
    else:
        instance, concurrency = stack.enter_context(standin()), 1024
    return Proxies(
        instance=instance,
        gateway=stack.enter_context(gateway(instance, concurrency=concurrency, compiled=compiled)),
        nginx=stack.enter_context(nginx(instance)),
    )


def add_interpreted(parser: argparse.ArgumentParser) -> None:
    """The flag that runs the gateway's sources as they are (`compiled=False`)."""
    parser.add_argument(
        "--interpreted",
        action="store_true",
        help="the gateway's sources as they are, not compiled as the control-plane image has them",
    )


def gateway_form(compiled: bool) -> str:
    """How the benchmark ran the gateway, for its output."""
    if compiled:
        return "gateway: compiled with mypyc, as the control-plane image carries it (setup.py)"
    return "gateway: interpreted (--interpreted), its sources as they are"
