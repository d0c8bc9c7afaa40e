"""Processes for benchmarks/async_events.py (and soak.py): `kubelambda local` serving a function
(`local_mode`), and the CPU time of it, its runtimes and the nats-server read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loadgen import free_port, wait_http

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.nats import NatsServer

FUNCTION = """
apiVersion: kubelambda.dev/v1alpha1
kind: Function
metadata: {{name: noop}}
spec:
  runtime: python3.12
  handler: app.handler
  concurrency: {concurrency}
  timeoutSeconds: 30
  scaling: {{minReplicas: {replicas}, maxReplicas: {replicas}}}
  env: [{{name: HANDLED, value: "{handled}"}}]
  code:
    inline:
      files:
        app.py: |
          import os
          ROOT = os.environ["HANDLED"]
          def handler(event, context):
              open(os.path.join(ROOT, event["tag"], context.aws_request_id), "w").close()
              return {{"ok": True}}
"""


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by these processes (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_parents() -> dict[int, int]:
    """pid -> parent pid of every process on this machine (one pass over /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(pid: int, parents: Mapping[int, int] | None = None) -> list[int]:
    """The processes under `pid`: a runtime's invocation workers are its own children.
    `parents`: a process_parents() already read, to see every process at the same moment."""
    if parents is None:
        parents = process_parents()
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _listening_ports() -> dict[str, int]:
    """socket inode -> port of every TCP socket listening on this machine."""
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports


def runtime_ports(parent: int) -> dict[int, int]:
    """pid -> port of the runtime processes local mode (process `parent`) started: those
    under it that listen on a TCP port (forked from the runtime zygote, their command line
    and environment are the zygote's, so the listening socket is what tells them)."""
    listening = _listening_ports()
    found: dict[int, int] = {}
    for pid in sorted(descendants(parent)):
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for link in links:
            inode = link.removeprefix("socket:[").removesuffix("]")
            port = listening.get(inode)
            if link.startswith("socket:[") and port is not None and port not in found.values():
                found[pid] = port
    return found


@dataclass
class Local:
    """One `kubelambda local` process and what is measured of it."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    handled: Path
    nats: NatsServer | None = None
    admin: int = 0  # its admin port (/metrics, /healthz)
    log: Path | None = None  # its output

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of local mode's process, of its runtimes (with their workers),
        of the nats-server, and of this process (the load generator)."""
        return {
            "gateway": cpu_seconds([self.process.pid]),
            "runtimes": cpu_seconds(descendants(self.process.pid)),
            "client": time.process_time(),
            "nats-server": cpu_seconds([self.nats.process.popen.pid])
            if self.nats and self.nats.process
            else 0.0,
        }


@contextmanager
def local_mode(
    work: Path,
    name: str,
    *options: str,
    replicas: int,
    concurrency: int,
    env: Mapping[str, str] | None = None,
    python: Sequence[str] = ("-m", "kubelambda.cli"),
    manifests: str = FUNCTION,
) -> Iterator[Local]:
    """`kubelambda local` serving the function with `replicas` instances, all ready; `env` is
    added to its environment, `python` is what the interpreter runs (the CLI, or a wrapper that
    watches it, as async_events_gc.py's). `manifests`: other manifests to serve, a template
    formatted as FUNCTION is ({concurrency}, {replicas}, {handled}: the folder the functions'
    handlers may write to), for which `replicas` instances are started at once."""
    folder = work / name
    handled = folder / "handled"
    handled.mkdir(parents=True)
    manifest = folder / "function.yaml"
    manifest.write_text(
        manifests.format(concurrency=concurrency, replicas=replicas, handled=handled)
    )
    port, admin = free_port(), free_port()
    log = folder / "local.log"  # a file, not a pipe: three log lines per invocation
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *python, "local", str(manifest), "--port", str(port),
             "--admin-port", str(admin), *options],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{admin}/healthz", process=proc, timeout=30)
        deadline = time.monotonic() + 30
        while len(found := runtime_ports(proc.pid)) < replicas:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{name}: {len(found)} of {replicas} instances; see {log}")
            time.sleep(0.05)
        for runtime_port in found.values():
            wait_http(f"http://127.0.0.1:{runtime_port}/healthz", process=proc, timeout=30)
        yield Local(name=name, process=proc, port=port, handled=handled, admin=admin, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
