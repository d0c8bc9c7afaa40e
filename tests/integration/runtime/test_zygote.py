"""The runtime forked by local mode's zygote (``python -m kubelambda_runtime.zygote``), on its
own: every runtime suite of this folder again with each runtime a fork of one zygote (its first
workers forks too), then what only a fork must get right: the zygote as the runtime's parent, a
session of its own, exactly the environment asked for, nothing left behind when it is killed or
when local mode goes away.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.runtime import test_connections, test_errors, test_invoke, test_processes
from support.runtime import RuntimeProcess, start_runtime, write_code
from support.waiting import GiveUp, free_port, wait_for

# The runtime suites again, collected here, where `runtime` below forks each runtime.
for _suite in (test_processes, test_errors, test_invoke, test_connections):
    for _name, _test in vars(_suite).items():
        if _name.startswith("test_"):
            assert _name not in globals(), f"two suites have a {_name}"
            globals()[_name] = _test


class Zygote:
    """A zygote driven the way local mode drives it, from a thread of the test."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-u",
                    "-m",
                    "kubelambda_runtime.zygote",
                    str(theirs.fileno()),
                ],
                pass_fds=(theirs.fileno(),),
                env=env,
            )
        self._answers: dict[int, tuple[dict[str, Any], list[int]]] = {}
        self.exits: dict[int, int] = {}
        self._changed = threading.Condition()
        self._ids = 0
        self.pid = self._next_answer(None)["pid"]
        threading.Thread(target=self._read, daemon=True).start()

    def _next_answer(self, timeout: float | None) -> dict[str, Any]:
        readable, _, _ = select.select([self.control], [], [], timeout or 30)
        if not readable:
            raise TimeoutError("the zygote said nothing")
        data, _, _, _ = socket.recv_fds(self.control, 65536, 1)
        message: dict[str, Any] = json.loads(data)
        return message

    def _read(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.control, 65536, 1)
            except OSError:
                return
            if not data:
                return
            message = json.loads(data)
            with self._changed:
                if message["op"] == "exited":
                    self.exits[message["pid"]] = message["code"]
                else:
                    self._answers[message["id"]] = (message, fds)
                self._changed.notify_all()

    def ask(self, request: dict[str, Any], fds: list[int]) -> tuple[dict[str, Any], list[int]]:
        self._ids += 1
        ident = self._ids
        socket.send_fds(self.control, [json.dumps({**request, "id": ident}).encode()], fds)
        with self._changed:
            if not self._changed.wait_for(lambda: ident in self._answers, 30):
                raise TimeoutError(f"the zygote did not answer request {ident}")
            return self._answers.pop(ident)

    def spawn(self, env: dict[str, str], *, cwd: Path, stdout: int, ready: int) -> ForkedPopen:
        answer, fds = self.ask(
            {"op": "spawn", "env": env, "cwd": str(cwd), "args": []}, [stdout, ready]
        )
        assert answer["op"] == "spawned", answer
        return ForkedPopen(self, answer["pid"], fds[0])

    def close(self) -> int:
        self.control.shutdown(socket.SHUT_RDWR)  # the reading thread holds the socket open
        self.control.close()
        return self.process.wait(30)


class ForkedPopen:
    """A runtime the zygote forked, with subprocess.Popen's face (for RuntimeProcess)."""

    def __init__(self, zygote: Zygote, pid: int, pidfd: int) -> None:
        self.zygote, self.pid, self.pidfd = zygote, pid, pidfd

    @property
    def returncode(self) -> int | None:
        return self.zygote.exits.get(self.pid)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        with self.zygote._changed:
            if not self.zygote._changed.wait_for(lambda: self.pid in self.zygote.exits, timeout):
                raise subprocess.TimeoutExpired(["forked runtime"], timeout or 0)
        return self.zygote.exits[self.pid]

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start_forked(
    zygote: Zygote,
    *,
    code_dir: Path,
    handler: str = "app.handler",
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> RuntimeProcess:
    """``support.runtime.start_runtime``, forked by ``zygote``: the same environment."""
    port = free_port()
    log_path = code_dir.parent / f"runtime-{port}.log"
    environment = {
        **os.environ,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(code_dir),
        "KUBELAMBDA_HOST": "127.0.0.1",
        "KUBELAMBDA_PORT": str(port),
        **(env or {}),
    }
    ready_out, ready_in = os.pipe()
    with log_path.open("wb") as log:
        try:
            process = zygote.spawn(environment, cwd=code_dir, stdout=log.fileno(), ready=ready_in)
        finally:
            os.close(ready_in)
    runtime = RuntimeProcess(process, f"http://127.0.0.1:{port}", log_path, code_dir)  # type: ignore[arg-type]
    try:
        if wait_ready:
            readable, _, _ = select.select([ready_out], [], [], 20)
            said = os.read(ready_out, 64) if readable else b"(nothing within 20 s)"
            if said.strip() not in (b"ready", b"init_failed"):
                raise GiveUp(f"the runtime said {said!r}:\n{runtime.logs()}")
        else:
            wait_for(
                lambda: runtime.client.get("/healthz").status_code == 200,
                timeout=20,
                what=f"the runtime on port {port} to answer /healthz",
            )
    except Exception:
        runtime.stop()
        raise
    finally:
        os.close(ready_out)
    return runtime


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    started = Zygote({**os.environ, "ONLY_THE_ZYGOTE_HAS_THIS": "1"})
    yield started
    started.close()


@pytest.fixture
def runtime(tmp_path: Path, zygote: Zygote) -> Iterator[Any]:
    """``runtime({"app.py": source}, handler=..., env=...)``, forked by the zygote."""
    started: list[RuntimeProcess] = []

    def start(files: dict[str, str], **options: Any) -> RuntimeProcess:
        code_dir = write_code(tmp_path / f"code{len(started)}", files)
        process = start_forked(zygote, code_dir=code_dir, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


WHO = """
import os, sys, time

def handler(event, context):
    return {
        "worker": os.getpid(),
        "keeper": os.getppid(),
        "session": os.getsid(0),
        "group": os.getpgid(0),
        "environ": dict(os.environ),
        "path": sys.path,
        "flags": [sys.flags.isolated, sys.flags.ignore_environment, sys.flags.safe_path],
        "zone": time.tzname,
        "cmdline": open("/proc/self/cmdline", "rb").read().decode().split("\\0"),
    }
"""


def test_the_runtime_is_a_child_of_the_zygote_in_a_session_of_its_own_and_forks_its_workers(
    runtime, zygote
):
    fn = runtime({"app.py": WHO})
    seen = fn.invoke("{}").json()
    assert parent(fn.process.pid) == zygote.pid
    assert parent(seen["keeper"]) == fn.process.pid
    assert os.getsid(fn.process.pid) == fn.process.pid
    assert os.getpgid(fn.process.pid) == fn.process.pid
    # Its workers: a process group each (the keeper's), in the runtime's session.
    assert seen["session"] == fn.process.pid
    assert seen["group"] == seen["keeper"]
    zygote_command = Path(f"/proc/{zygote.pid}/cmdline").read_bytes().decode().split("\0")
    assert seen["cmdline"] == zygote_command  # a fork, not a new `python -m ...worker`


def test_a_forked_runtime_sees_what_a_new_one_sees(runtime, tmp_path):
    env = {"MY_SETTING": "yes", "TZ": "America/New_York", "TMPDIR": str(tmp_path)}
    forked = runtime({"app.py": WHO}, env=env).invoke("{}").json()
    code = write_code(tmp_path / "spawned", {"app.py": WHO})
    alone = start_runtime(code_dir=code, env=env)
    try:
        spawned = alone.invoke("{}").json()
        alone_session = os.getsid(alone.process.pid)
    finally:
        alone.stop()
    assert spawned["session"] == alone_session  # a new worker too: in its runtime's session
    assert spawned["group"] == spawned["keeper"]
    assert "ONLY_THE_ZYGOTE_HAS_THIS" not in forked["environ"]
    assert forked["environ"]["MY_SETTING"] == "yes"
    per_runtime = ("AWS_LAMBDA_LOG_STREAM_NAME", "KUBELAMBDA_PORT", "LAMBDA_TASK_ROOT")
    for seen in (forked, spawned):
        for name in per_runtime:
            seen["environ"].pop(name)
        seen["path"].pop(0)  # the task root
    assert forked["environ"] == spawned["environ"]
    assert forked["path"] == spawned["path"]
    assert forked["flags"] == spawned["flags"] == [1, 1, 1]
    assert forked["zone"] == spawned["zone"] == ["EST", "EDT"]


def test_an_environment_that_changes_what_a_process_reads_at_start_is_refused(zygote, tmp_path):
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    ready_out, ready_in = os.pipe()
    try:
        answer, _ = zygote.ask(
            {"op": "spawn", "env": env, "cwd": str(tmp_path), "args": []}, [1, ready_in]
        )
    finally:
        os.close(ready_in)
    assert answer["op"] == "refused"
    assert "LD_LIBRARY_PATH" in answer["reason"]
    assert os.read(ready_out, 16) == b""  # its copy closed: no runtime holds it
    os.close(ready_out)


def test_a_malformed_request_is_answered_and_the_zygote_serves_on(zygote, runtime):
    answer, _ = zygote.ask({"op": "spawn", "env": {}, "cwd": "/", "args": []}, [1])  # one fd
    assert answer == {"op": "failed", "id": answer["id"], "error": "malformed request"}
    answer, _ = zygote.ask({"op": "dance"}, [1, 2])
    assert answer["op"] == "failed"
    assert runtime({"app.py": WHO}).invoke("{}").status_code == 200


def test_a_runtime_killed_outright_leaves_nothing_behind(runtime, zygote, tmp_path):
    """Killed mid-invocation: its worker, busy in the handler, would not notice for a while;
    the zygote ends it, and what the handler started, at once."""
    fn = test_processes.runtime_with(runtime, tmp_path)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            fn.invoke,
            '{"own_session": true, "daemon": true, "hold": true}',
            **{"Lambda-Runtime-Aws-Request-Id": "k-1"},
        )
        processes = test_processes.started(tmp_path, "k-1")
        assert len(processes.running()) == 2
        os.kill(fn.process.pid, signal.SIGKILL)
        assert fn.process.wait(10) == -signal.SIGKILL
        processes.wait_gone("what the killed runtime's environment was running")
        with pytest.raises(httpx.TransportError):
            held.result()
    test_processes.assert_no_zombies(zygote.pid)


def test_when_local_mode_goes_the_zygote_stops_its_runtimes_and_what_they_started(tmp_path):
    zygote = Zygote()
    fn = None
    try:
        code = write_code(tmp_path / "code", {"app.py": test_processes.APP})
        fn = start_forked(zygote, code_dir=code, env={"PIDS_DIR": str(tmp_path)})
        fn.invoke(
            '{"own_session": true, "daemon": true}', **{"Lambda-Runtime-Aws-Request-Id": "g-1"}
        )
        processes = test_processes.started(tmp_path, "g-1")
        assert zygote.close() == 0
        assert not Path(f"/proc/{fn.process.pid}").exists()  # ended and reaped
        processes.wait_gone("what the runtime started, after the zygote's end")
        with pytest.raises(httpx.TransportError):
            fn.client.get("/healthz")
    finally:
        if zygote.process.poll() is None:  # it failed to stop: leave nothing running
            zygote.process.kill()
            zygote.process.wait()
            if fn is not None:
                fn.process.kill()
