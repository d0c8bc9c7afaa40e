"""A real NATS server with JetStream for tests: the nats-server built by `binaries`, on loopback,
keeping its streams in a store folder the caller gives, so a test can stop it, kill -9 it and
restart it on the same port and store to check what survived.

`nats_server()` is a context manager, `nats_for_pytest()` wraps it for a yield-fixture and
`NatsFactory` starts a test's own servers on demand (tests/integration/conftest.py).
`nats_cluster()` starts servers routed to each other as one clustered JetStream, each member
with its own ports and store, so a test can kill one and bring it back as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import binaries
from harness.builds import PartUnavailable
from harness.cache import subdir
from harness.procs import Server, ServerFailed, free_port, scratch_dir, start, wait_until

READY_TIMEOUT = 30.0  # seconds; it is up in well under one, more while it recovers big streams
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL; a JetStream shutdown flushes its store


def nats_binary() -> Path:
    """The cached nats-server, built on first use; if it cannot be had, say how to build it."""
    try:
        return binaries.ensure_nats_server()
    except PartUnavailable as exc:
        raise PartUnavailable(
            f"nats-server {binaries.NATS_SERVER_VERSION} is needed and could not be had: run "
            f"`scripts/build-parts nats-server` (about half a minute) and read its log.\n{exc}"
        ) from exc


def _greeting(port: int) -> dict[str, Any]:
    """The INFO line a NATS server sends first on every client connection, as a dict."""
    with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
        line = sock.makefile("rb").readline(1 << 16)
    if not line.startswith(b"INFO "):
        raise ConnectionError(f"127.0.0.1:{port} did not greet as NATS does: {line[:80]!r}")
    info: dict[str, Any] = json.loads(line[5:])
    return info


@dataclass(frozen=True, kw_only=True)
class ClusterRoutes:
    """A server's place in a cluster: the cluster's name, the port it takes routes on, and every
    member's route port (its own among them: nats-server ignores a route to itself)."""

    name: str
    port: int
    routes: tuple[int, ...]


class NatsServer:
    """One nats-server on a fixed loopback port and store folder, started and ended at will.

    The port and the store outlive the process, so `restart()` brings back the same broker with
    whatever its store kept; `kill()` is a crash (SIGKILL, nothing flushed on the way out). A
    cluster's member also keeps its monitoring and route ports.
    """

    def __init__(
        self,
        *,
        binary: Path,
        port: int,
        store_dir: Path,
        name: str,
        log: Path,
        ready_timeout: float = READY_TIMEOUT,
        monitor_port: int | None = None,
        cluster: ClusterRoutes | None = None,
    ) -> None:
        self.binary = binary
        self.port = port
        self.store_dir = store_dir
        self.name = name
        self.log = log
        self.ready_timeout = ready_timeout
        self.monitor_port = monitor_port
        self.cluster = cluster
        self.process: Server | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def monitor(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET a monitoring endpoint (`/jsz`, `/healthz`): its status code and JSON body; an
        error status is an answer too (`/healthz` says 503 while JetStream is not current)."""
        if self.monitor_port is None:
            raise RuntimeError(f"nats-server {self.name} was started without a monitoring port")
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"{}")

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def log_tail(self, lines: int = 40) -> str:
        if self.process is None:
            return f"--- nats-server {self.name}: never started (log {self.log}) ---"
        return self.process.log_tail(lines)

    def argv(self) -> list[str]:
        return [
            str(self.binary),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-n",
            self.name,
            "-js",
            "-sd",
            str(self.store_dir),
            *(["-m", str(self.monitor_port)] if self.monitor_port is not None else []),
            *(_cluster_flags(self.cluster) if self.cluster is not None else []),
        ]

    def start(self) -> None:
        """Start the process and return once it greets clients with JetStream on; fail naming
        the log's tail if it exits first or is not ready by `ready_timeout`."""
        if self.alive():
            raise RuntimeError(f"nats-server {self.name} is already running at {self.url}")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        # One log for the server's whole life: each start appends, after its command line.
        self.process = start("nats-server", self.argv(), log=self.log, cwd=self.store_dir)
        wait_until(
            self._ready,
            what=f"nats-server {self.name} at {self.url} with JetStream",
            timeout=self.ready_timeout,
            watch=[self.process],
        )

    def _ready(self) -> bool:
        info = _greeting(self.port)
        # Another server that took the port between our runs would greet too: check it is ours.
        if info.get("server_name") != self.name:
            raise ConnectionError(f"{self.url} is {info.get('server_name')!r}, not {self.name!r}")
        if info.get("jetstream") is not True:
            raise ConnectionError(f"{self.url} greets without JetStream: {info}")
        return True

    def stop(self, *, grace: float = STOP_GRACE) -> None:
        """SIGTERM (JetStream flushes and closes its store), SIGKILL if still up after `grace`."""
        if self.process is not None:
            self.process.stop(grace=grace)

    def kill(self, *, timeout: float = 10.0) -> None:
        """SIGKILL, as a crash or an OOM kill would: the store keeps only what reached the disk
        (or the kernel's page cache) before it."""
        if self.process is None or not self.process.alive():
            return
        popen = self.process.popen
        with contextlib.suppress(ProcessLookupError):  # it exited by itself: wait() reaps it
            os.killpg(popen.pid, signal.SIGKILL)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ServerFailed(
                f"nats-server {self.name} (pid {popen.pid}) survived SIGKILL for {timeout:.0f} s"
            ) from exc

    def restart(self) -> None:
        """Stop it if it runs, then start it again on the same port, name and store folder."""
        self.stop()
        self.start()


def _cluster_flags(cluster: ClusterRoutes) -> list[str]:
    # A clustered JetStream needs a server name (-n, given) and a cluster name on every member.
    routes = ",".join(f"nats://127.0.0.1:{port}" for port in cluster.routes)
    return [
        "--cluster_name",
        cluster.name,
        "--cluster",
        f"nats://127.0.0.1:{cluster.port}",
        "--routes",
        routes,
    ]


def _default_log_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"nats-{stamp}-", dir=subdir("logs")))


@contextmanager
def nats_server(
    *,
    store_dir: Path | None = None,
    name: str = "kubelambda-test",
    log_dir: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[NatsServer]:
    """Start a nats-server with JetStream on a free loopback port; yield it once it is ready; stop
    it however the body ends. Without `store_dir` the store is a temp folder removed at the end;
    a given one is left to its owner."""
    binary = nats_binary()
    with ExitStack() as cleanup:
        if store_dir is None:
            store_dir = scratch_dir("nats")
            cleanup.callback(shutil.rmtree, store_dir, ignore_errors=True)
        logs = log_dir if log_dir is not None else _default_log_dir()
        server = NatsServer(
            binary=binary,
            port=free_port(),
            store_dir=store_dir,
            name=name,
            log=logs / f"{name}.log",
            ready_timeout=ready_timeout,
        )
        cleanup.callback(server.stop)  # runs before the store's removal: callbacks unwind LIFO
        server.start()
        yield server


def nats_for_pytest(tmp_path_factory: Any, **kwargs: Any) -> Iterator[NatsServer]:
    """For a yield-fixture: `yield from nats_for_pytest(tmp_path_factory, name=...)`."""
    log_dir = tmp_path_factory.mktemp("nats-logs")
    with nats_server(log_dir=log_dir, **kwargs) as server:
        yield server


class NatsFactory:
    """Starts servers of one test on demand (each its own port, name and store unless given one)
    and stops them all at `close()`; `servers` lists them, for log tails of a failed test."""

    def __init__(self, *, log_dir: Path, store_root: Path) -> None:
        self.log_dir = log_dir
        self.store_root = store_root
        self.servers: list[NatsServer] = []
        self._cleanup = ExitStack()

    def __call__(
        self,
        *,
        store_dir: Path | None = None,
        name: str | None = None,
        ready_timeout: float = READY_TIMEOUT,
    ) -> NatsServer:
        name = name or f"kubelambda-test-{len(self.servers)}"
        server = self._cleanup.enter_context(
            nats_server(
                store_dir=store_dir or self.store_root / name,
                name=name,
                log_dir=self.log_dir,
                ready_timeout=ready_timeout,
            )
        )
        self.servers.append(server)
        return server

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(server.log_tail(lines) for server in self.servers)

    def close(self) -> None:
        self._cleanup.close()

    def __enter__(self) -> NatsFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NatsCluster:
    """Servers routed to each other as one clustered JetStream (`nats_cluster()` starts them).

    `urls` is the comma-separated list a client is given; `restart(member)` brings a stopped or
    killed member back on its ports and store and waits until the cluster is whole again.
    """

    def __init__(self, *, name: str, servers: Sequence[NatsServer], ready_timeout: float) -> None:
        self.name = name
        self.servers = list(servers)
        self.ready_timeout = ready_timeout

    @property
    def urls(self) -> str:
        return ",".join(server.url for server in self.servers)

    def member(self, name: str) -> NatsServer:
        for server in self.servers:
            if server.name == name:
                return server
        raise KeyError(f"no member {name!r} in cluster {self.name}: {self.names()}")

    def names(self) -> list[str]:
        return [server.name for server in self.servers]

    def running(self) -> list[NatsServer]:
        return [server for server in self.servers if server.alive()]

    def meta_leader(self) -> str | None:
        """The JetStream meta leader every running member names, if it runs; None while they
        disagree or elect one (a member's answer may still name a leader that was killed)."""
        running = self.running()
        named = {
            server.monitor("/jsz")[1].get("meta_cluster", {}).get("leader") for server in running
        }
        if len(named) != 1:
            return None
        (leader,) = named
        return leader if leader in {server.name for server in running} else None

    def wait_ready(self, *, timeout: float | None = None) -> str:
        """Wait until every running member is healthy (JetStream on, its own streams and
        consumers current) under a meta leader they all name; return the leader's name. Fails
        with the members' logs if one exits, or at the deadline."""
        leaders: list[str] = []

        def whole() -> bool:
            for server in self.running():
                status, body = server.monitor("/healthz")
                if status != 200:
                    raise ConnectionError(f"{server.name} is not healthy yet: {status} {body}")
            leader = self.meta_leader()
            if leader is not None:
                leaders.append(leader)
            return leader is not None

        wait_until(
            whole,
            what=f"JetStream cluster {self.name} with a meta leader",
            timeout=self.ready_timeout if timeout is None else timeout,
            watch=[server.process for server in self.running() if server.process is not None],
        )
        return leaders[-1]

    def restart(self, member: NatsServer) -> None:
        """Stop `member` if it runs, start it on its ports and store, wait for the cluster."""
        member.restart()
        self.wait_ready()

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(server.log_tail(lines) for server in self.servers)


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together while chosen, so none repeats)."""
    with ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


@contextmanager
def nats_cluster(
    *,
    size: int = 3,
    name: str = "kubelambda-test",
    store_root: Path | None = None,
    log_dir: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[NatsCluster]:
    """Start `size` nats-servers on loopback, routed to each other as JetStream cluster `name`
    (members `name-0`, `name-1`, ..., each with its own client, route and monitoring port and
    its store under `store_root`); yield them once they have a meta leader; stop them all however
    the body ends. Without `store_root` the stores are a temp folder removed at the end."""
    if size < 2:
        raise ValueError(f"a cluster of {size}: use nats_server() for one server")
    binary = nats_binary()
    with ExitStack() as cleanup:
        if store_root is None:
            store_root = scratch_dir("nats-cluster")
            cleanup.callback(shutil.rmtree, store_root, ignore_errors=True)
        logs = log_dir if log_dir is not None else _default_log_dir()
        ports = _free_ports(3 * size)
        clients, monitors, routes = ports[:size], ports[size : 2 * size], ports[2 * size :]
        servers = []
        for index in range(size):
            member = f"{name}-{index}"
            server = NatsServer(
                binary=binary,
                port=clients[index],
                store_dir=store_root / member,
                name=member,
                log=logs / f"{member}.log",
                ready_timeout=ready_timeout,
                monitor_port=monitors[index],
                cluster=ClusterRoutes(name=name, port=routes[index], routes=tuple(routes)),
            )
            cleanup.callback(server.stop)
            servers.append(server)
        # Each greets clients before the others are up; the meta leader needs a majority.
        for server in servers:
            server.start()
        cluster = NatsCluster(name=name, servers=servers, ready_timeout=ready_timeout)
        cluster.wait_ready()
        yield cluster
