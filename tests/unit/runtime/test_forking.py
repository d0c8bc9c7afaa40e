"""Forked children that start as a new process would (kubelambda_runtime/forking.py). The cases
that change process state run ``become`` in a child forked for the test, which reports what it
sees through a pipe."""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pytest

from kubelambda_runtime import forking


def open_fds() -> list[int]:
    """This process's open descriptors (not the listing's own, closed once it is read)."""
    listed = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    return [fd for fd in listed if os.path.exists(f"/proc/self/fd/{fd}")]


def in_child(body: Callable[[int], Any]) -> Any:
    """Run ``body(report)`` in a forked child and return what it returned (as JSON); it must
    keep the descriptor ``report`` open."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            result = json.dumps(body(write)).encode()
        except BaseException as exc:  # report it, never return into pytest
            result = json.dumps({"error": repr(exc)}).encode()
        os.write(write, result)
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks))


@pytest.mark.parametrize(
    ("signum", "handler"),
    [
        (signal.SIGINT, signal.default_int_handler),
        (signal.SIGPIPE, signal.SIG_IGN),
        (signal.SIGXFSZ, signal.SIG_IGN),
        (signal.SIGTERM, signal.SIG_DFL),
        (signal.SIGCHLD, signal.SIG_DFL),
        (signal.SIGHUP, signal.SIG_DFL),
    ],
)
def test_fresh_handlers_are_a_new_interpreters(signum, handler):
    assert forking.fresh_handler(signum) is handler


def test_become_gives_exactly_the_environment_asked_for_and_reads_tz_and_tmpdir_again(tmp_path):
    os.environ["KUBELAMBDA_TEST_ONLY_IN_THE_PARENT"] = "1"
    try:

        def body(report: int) -> Any:
            tempfile.gettempdir()  # cached before, as a zygote's import of it might have
            keep = os.open(os.devnull, os.O_RDONLY)
            forking.become(
                environment={"TZ": "America/New_York", "TMPDIR": str(tmp_path), "ONLY": "me"},
                cwd=str(tmp_path),
                keep=(keep, report),
                argv=["runtime", "--flag"],
            )
            return {
                "environ": dict(os.environ),
                "zone": time.strftime("%Z", time.localtime(1_700_000_000)),
                "tmp": tempfile.gettempdir(),
                "cwd": os.getcwd(),
                "argv": sys.argv,
                "kept": os.path.exists(f"/proc/self/fd/{keep}"),
            }

        seen = in_child(body)
    finally:
        del os.environ["KUBELAMBDA_TEST_ONLY_IN_THE_PARENT"]
    assert seen["environ"] == {"TZ": "America/New_York", "TMPDIR": str(tmp_path), "ONLY": "me"}
    assert seen["zone"] == "EST"
    assert seen["tmp"] == str(tmp_path)
    assert seen["cwd"] == str(tmp_path)
    assert seen["argv"] == ["runtime", "--flag"]
    assert seen["kept"]


def test_become_leaves_a_session_of_its_own_with_only_the_descriptors_it_keeps(tmp_path):
    held = os.open(os.devnull, os.O_RDONLY)  # a descriptor the parent has, like its socket
    out = tmp_path / "out"

    def body(report: int) -> Any:
        keep = os.open(os.devnull, os.O_RDONLY)
        into = os.open(out, os.O_WRONLY | os.O_CREAT)
        forking.become(environment={}, cwd=None, keep=(keep, report), argv=["x"], stdout=into)
        os.write(1, b"to stdout\n")
        os.write(2, b"to stderr\n")
        return {
            "fds": open_fds(),
            "keep": sorted([keep, report]),
            "session": os.getsid(0) == os.getpid(),
            "group": os.getpgid(0) == os.getpid(),
            "stdin": os.readlink("/proc/self/fd/0"),
        }

    try:
        seen = in_child(body)
    finally:
        os.close(held)
    assert seen["fds"] == [0, 1, 2, *seen["keep"]]
    assert seen["session"] and seen["group"]
    assert seen["stdin"] == os.devnull
    assert out.read_text() == "to stdout\nto stderr\n"


def test_become_as_a_worker_leads_a_process_group_in_its_parents_session():
    # A worker shares its runtime's session: where the kernel shares the CPU out by session
    # (autogroup), an instance's workers are one group, as in a pod's cgroup.
    def body(report: int) -> Any:
        forking.become(environment={}, cwd=None, keep=(report,), argv=["x"], session=False)
        return {"session": os.getsid(0), "group": os.getpgid(0), "pid": os.getpid()}

    seen = in_child(body)
    assert seen["session"] == os.getsid(0)
    assert seen["group"] == seen["pid"]


def test_become_resets_handlers_the_parent_set_and_unblocks_signals():
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:

        def body(report: int) -> Any:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            forking.become(environment={}, cwd=None, keep=(report,), argv=["x"])
            return {
                "usr1": signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL,
                "int": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
                "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
            }

        seen = in_child(body)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
        signal.signal(signal.SIGUSR1, previous)
    assert seen == {"usr1": True, "int": True, "blocked": []}


@pytest.mark.parametrize(
    ("code", "status"), [(None, 0), (0, 0), (3, 3), ("a message", 1), (256 + 4, 260)]
)
def test_system_exit_codes_are_the_interpreters(code, status):
    assert forking.exit_code(SystemExit(code)) == status


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("return 4", 4),
        ("raise SystemExit(5)", 5),
        ("raise RuntimeError('boom')", 1),
        ("os.kill(os.getpid(), signal.SIGKILL)", -signal.SIGKILL),
    ],
)
def test_a_forked_child_exits_with_its_bodys_status_and_runs_atexit(tmp_path, body, code):
    marker = tmp_path / "atexit"
    source = (
        "def run():\n    import atexit, os, signal\n"
        f"    atexit.register(lambda: open({str(marker)!r}, 'w').close())\n    {body}\n"
    )
    scope: dict[str, Any] = {}
    exec(source, scope)
    pid = os.fork()
    if pid == 0:
        forking.run_child(scope["run"])
    child = forking.ForkedChild(pid)
    assert child.returncode is None
    assert child.wait() == code
    assert child.returncode == code
    assert marker.exists() == (code >= 0)  # a SIGKILL runs nothing


def test_a_child_someone_else_reaped_waits_as_popen_does():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    os.waitpid(pid, 0)
    assert forking.ForkedChild(pid).wait() == 0


def test_close_descriptors_keeps_0_to_2_and_those_named():
    def body(report: int) -> Any:
        kept = os.open(os.devnull, os.O_RDONLY)
        os.open(os.devnull, os.O_RDONLY)
        forking.close_descriptors([kept, report])
        return {"listed": open_fds(), "kept": sorted([kept, report])}

    seen = in_child(body)
    assert seen["listed"] == [0, 1, 2, *seen["kept"]]
