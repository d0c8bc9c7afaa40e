"""Nothing an execution environment started outlives it, as on Lambda: a timeout, a crash or
the runtime's stop ends every process a handler started, children that left its session and
double-forked daemons included, and leaves no zombie; while the environment lives they run on.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path

import pytest

from support.waiting import wait_for

APP = """
import json, os, subprocess, time

def own_session():
    # Out of the worker's process group and session: killpg of the worker misses it.
    return subprocess.Popen(["sleep", "300"], start_new_session=True).pid

def daemon():
    # The classic double fork: the daemon's parent exits, so it is nobody's child.
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(write, str(os.getpid()).encode())
            os.execvp("sleep", ["sleep", "300"])
        os._exit(0)
    os.close(write)
    os.waitpid(middle, 0)
    pid = int(os.read(read, 32))
    os.close(read)
    return pid

def started_at(pid):
    # With its pid, this tells the process apart from a later one given the same pid.
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[19])

def handler(event, context):
    pids = []
    if event.get("own_session"):
        pids.append(own_session())
    if event.get("daemon"):
        pids.append(daemon())
    started = [[pid, started_at(pid)] for pid in pids]
    folder = os.environ["PIDS_DIR"]
    with open(os.path.join(folder, "partial"), "w") as out:
        json.dump(started, out)
    os.rename(os.path.join(folder, "partial"), os.path.join(folder, context.aws_request_id))
    if event.get("hang"):
        time.sleep(60)
    if event.get("crash"):
        os._exit(3)
    if event.get("hold"):
        go = os.path.join(folder, "go")
        deadline = time.monotonic() + 30
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.02)
    return started
"""

CONNECTIONS = pytest.mark.parametrize(
    "connection", ["keep-alive", "close"], ids=["handed-over", "framed"]
)


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent and start time of process ``pid``, or None if there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1]), int(fields[19])


class Started:
    """Processes a handler started (pid and start time, as it recorded them)."""

    def __init__(self, started: list[list[int]]) -> None:
        assert started, "the handler started nothing"
        self.started = {pid: since for pid, since in started}

    def _states(self) -> dict[int, str]:
        """The state of each that still has a process table entry."""
        states = {}
        for pid, since in self.started.items():
            stat = _stat(pid)
            if stat is not None and stat[2] == since:
                states[pid] = stat[0]
        return states

    def running(self) -> list[int]:
        return sorted(pid for pid, state in self._states().items() if state != "Z")

    def left(self) -> list[int]:
        """Those not gone yet: a zombie is dead, but not gone until its parent reaps it."""
        return sorted(self._states())

    def wait_gone(self, what: str) -> None:
        try:
            wait_for(lambda: not self.left(), timeout=5, what=f"{what} to end")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; still there (pid: state): {self._states()}") from None


def started(folder: Path, request_id: str) -> Started:
    path = folder / request_id
    wait_for(path.exists, timeout=10, what=f"invocation {request_id} to start its processes")
    return Started(json.loads(path.read_text()))


def _tree(root: int) -> dict[int, str]:
    """Every process under ``root`` (not itself), with its state."""
    table: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))) is not None:
            table[int(name)] = (stat[1], stat[0])
    found: dict[int, str] = {}
    parents = [root]
    while parents:
        parent = parents.pop()
        for pid, (ppid, state) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = state
                parents.append(pid)
    return found


def assert_no_zombies(runtime_pid: int) -> None:
    try:
        wait_for(
            lambda: "Z" not in _tree(runtime_pid).values(),
            timeout=5,
            what="the zombies under the runtime to be reaped",
        )
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; under it (pid: state): {_tree(runtime_pid)}") from None


def runtime_with(runtime, folder: Path, **env: str):
    return runtime({"app.py": APP}, env={"PIDS_DIR": str(folder), **env})


@CONNECTIONS
def test_a_timeout_ends_what_the_handler_started_outside_its_session(runtime, tmp_path, connection):
    fn = runtime_with(runtime, tmp_path, AWS_LAMBDA_FUNCTION_TIMEOUT="1")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(
            fn.invoke,
            '{"own_session": true, "daemon": true, "hang": true}',
            Connection=connection,
            **{"Lambda-Runtime-Aws-Request-Id": "slow-1"},
        )
        processes = started(tmp_path, "slow-1")
        assert len(processes.running()) == 2
        assert answer.result().json()["errorType"] == "Sandbox.Timedout"
    processes.wait_gone("what the timed-out invocation started")
    assert_no_zombies(fn.process.pid)
    assert fn.invoke("{}").json() == []  # and a fresh environment serves


@CONNECTIONS
def test_a_crash_ends_what_the_handler_started(runtime, tmp_path, connection):
    fn = runtime_with(runtime, tmp_path)
    answer = fn.invoke(
        '{"own_session": true, "daemon": true, "crash": true}',
        Connection=connection,
        **{"Lambda-Runtime-Aws-Request-Id": "crash-1"},
    )
    assert answer.json()["errorMessage"].endswith("Runtime exited with error: exit status 3")
    started(tmp_path, "crash-1").wait_gone("what the crashed invocation started")
    assert_no_zombies(fn.process.pid)
    assert fn.invoke("{}").json() == []


def test_what_a_handler_leaves_running_lives_with_its_environment_and_ends_with_the_runtime(
    runtime, tmp_path
):
    fn = runtime_with(runtime, tmp_path)
    first = fn.invoke(
        '{"own_session": true, "daemon": true}', **{"Lambda-Runtime-Aws-Request-Id": "bg-1"}
    )
    processes = started(tmp_path, "bg-1")
    assert first.json() == [[pid, since] for pid, since in processes.started.items()]
    # The environment lives: what it started runs on, through the next invocations.
    assert fn.invoke("{}").json() == []
    assert fn.invoke("{}", Connection="close").json() == []
    assert processes.running() == sorted(processes.started)
    fn.stop()
    assert fn.process.returncode == 0
    processes.wait_gone("what the environment started, after the runtime stopped")


def test_a_dead_environment_takes_only_its_own_processes_with_it(runtime, tmp_path):
    fn = runtime_with(runtime, tmp_path, KUBELAMBDA_CONCURRENCY="2")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            fn.invoke,
            '{"daemon": true, "hold": true}',
            **{"Lambda-Runtime-Aws-Request-Id": "held-1"},
        )
        survivor = started(tmp_path, "held-1")
        crash = fn.invoke(
            '{"own_session": true, "daemon": true, "crash": true}',
            **{"Lambda-Runtime-Aws-Request-Id": "crash-2"},
        )
        assert crash.json()["errorType"] == "Runtime.ExitError"
        started(tmp_path, "crash-2").wait_gone("what the crashed environment started")
        (tmp_path / "go").touch()
        assert held.result().status_code == 200
    # The living environment's daemon, orphaned while it ran, is not taken for the dead one's.
    assert survivor.running() == sorted(survivor.started)
    assert_no_zombies(fn.process.pid)
    fn.stop()
    survivor.wait_gone("the living environment's daemon, after the runtime stopped")


def test_a_handler_still_waits_for_its_own_children_and_reads_their_exit_status(runtime, tmp_path):
    code = """
import os, subprocess

def handler(event, context):
    done = subprocess.run(["sh", "-c", "echo out; exit 3"], capture_output=True, text=True)
    child = os.fork()
    if child == 0:
        os._exit(5)
    _, status = os.waitpid(child, 0)
    return [done.returncode, done.stdout, os.waitstatus_to_exitcode(status)]
"""
    fn = runtime({"app.py": code})
    for _ in range(3):
        assert fn.invoke("{}").json() == [3, "out\n", 5]
    assert_no_zombies(fn.process.pid)
