"""Local mode at its file-descriptor limit: it says so in a line (not a traceback for every
accept that fails, ~10,000 a second before), answers 503 with Retry-After to a request it
cannot open an instance connection for, and serves again once descriptors are free."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from support.manifests import inline_function
from support.waiting import GiveUp, free_port, wait_for

LIMIT = 128  # the soft RLIMIT_NOFILE local mode runs under
ASKERS = 5  # requests made at the limit, at once: each needs its own instance connection
OBSERVED_SECONDS = 3.0
# Slow enough that the askers' requests are all in flight at once, whatever the machine's load:
# with a quick answer, one instance connection given back in time served them one by one (a
# CI run had all five answered 200 so).
HANDLER = (
    "import time\n"
    "def handler(event, context):\n"
    "    time.sleep(1)\n"
    "    return {'statusCode': 200, 'body': 'hi'}\n"
)


class Local:
    """`kubelambda local` under a low descriptor limit, its output collected as bytes."""

    def __init__(self, manifest: Path) -> None:
        self.port, admin = free_port(), free_port()
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        command = [sys.executable, "-m", "kubelambda.cli", "local", str(manifest)]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), "--admin-port", str(admin), "--hold-timeout", "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard)),
        )
        self.output = bytearray()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        while chunk := os.read(self.process.stdout.fileno(), 65536):
            self.output += chunk

    def said(self, text: str) -> bool:
        if self.process.poll() is not None:
            raise GiveUp(f"local mode exited with {self.process.returncode}:\n{self.text()}")
        return text.encode() in self.output

    def text(self, start: int = 0) -> str:
        return bytes(self.output[start : start + 4000]).decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None


def ask(sock: socket.socket) -> bytes:
    """GET /hello on an open connection; the answer's head (b"" if the connection dropped)."""
    try:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
        sock.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
        return answer
    except OSError:
        return b""


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Local]:
    """Local mode serving `hello` (GET /hello), from zero instances, under LIMIT."""
    manifest = tmp_path / "hello.yaml"
    function = inline_function("hello", HANDLER, concurrency=ASKERS)
    trigger = {
        "apiVersion": "kubelambda.dev/v1alpha1",
        "kind": "Trigger",
        "metadata": {"name": "hello"},
        "spec": {"function": "hello", "http": {"path": "/hello", "methods": ["GET"]}},
    }
    manifest.write_text(yaml.safe_dump_all([function, trigger]))
    started = Local(manifest)
    try:
        wait_for(lambda: started.said("kubelambda local: gateway"), timeout=30, what="serving")
        yield started
    finally:
        started.stop()


@contextlib.contextmanager
def exhausted(local: Local) -> Iterator[None]:
    """More connections than local mode has descriptors, until the block ends. Each sends a
    head whose body never comes, so it is held (for the 30 s body timeout), not 408 at 10 s."""
    mark = len(local.output)
    hogs = [sock for sock in (connect(local.port) for _ in range(LIMIT + 32)) if sock]
    try:
        for sock in hogs:
            # OSError: dropped, the gateway had no descriptor to take it with.
            with contextlib.suppress(OSError):
                sock.sendall(b"POST /hello HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n")
        wait_for(
            lambda: local.said("out of file descriptors") or len(local.output) - mark > 4096,
            timeout=10,
            what="local mode to say it is out of file descriptors",
        )
        yield
    finally:
        for sock in hogs:
            sock.close()
    wait_for(
        lambda: local.said("file descriptors available again"), timeout=15, what="the limit cleared"
    )


def test_at_the_descriptor_limit_local_mode_says_so_once_sheds_load_and_recovers(local):
    url = f"http://127.0.0.1:{local.port}/hello"
    assert httpx.get(url, timeout=30).status_code == 200  # its instance is up
    # Accepted now, to ask once the gateway has no descriptor left for the instance.
    askers = [sock for sock in (connect(local.port) for _ in range(ASKERS)) if sock]
    mark = len(local.output)
    try:
        with exhausted(local):
            with concurrent.futures.ThreadPoolExecutor(ASKERS) as pool:
                answers = list(pool.map(ask, askers))
            time.sleep(OBSERVED_SECONDS)  # the claim is about a span: little is said in it
            said = len(local.output) - mark
            assert said < 4096, f"{said} bytes of output at the limit:\n{local.text(mark)}"
    finally:
        for sock in askers:
            sock.close()
    statuses = [answer[9:12] for answer in answers]
    assert statuses.count(b"503") >= 1, answers
    assert set(statuses) <= {b"200", b"503"}, answers
    for answer in answers:
        if answer[9:12] == b"503":
            assert b"retry-after: 1" in answer.lower(), answer
    assert httpx.get(url, timeout=30).status_code == 200
    assert local.output.count(b"out of file descriptors") == 1, local.text(mark)


def test_a_function_that_could_not_start_at_the_limit_starts_once_descriptors_free_up(local):
    asker = connect(local.port)  # accepted before the limit
    assert asker is not None
    try:
        with exhausted(local):
            # At zero instances: the request wakes the function, whose process cannot
            # start without descriptors for its pipes. Held, then 504 at the hold timeout.
            answer = ask(asker)
            assert answer[9:12] == b"504", answer
            wait_for(
                lambda: local.said("hello: cannot start an instance"),
                timeout=10,
                what="the failed start said",
            )
    finally:
        asker.close()
    # Tried again (every 2 s): the function wants its instance still, and a request does
    # not ask for it again (it asks only while the function is at zero).
    url = f"http://127.0.0.1:{local.port}/hello"
    wait_for(
        lambda: httpx.get(url, timeout=30).status_code == 200,
        timeout=30,
        what="hello to answer 200",
    )
    assert local.output.count(b"cannot start an instance") == 1, local.text()
