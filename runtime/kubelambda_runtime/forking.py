"""Forked children that start as a new process would: the runtimes local mode's zygote forks
(zygote.py), and the first workers those runtimes fork (``fork_worker``).

``become`` gives a child just forked the state ``python -I -u -m ...`` would have started
with: a session of its own (a runtime) or a process group of its own in its runtime's session
(a worker, as ``exec_worker`` starts one: server/prespawn.py), stdin on /dev/null, only the
descriptors it is given, the signal handlers of a new interpreter, exactly the environment
asked for (and TZ and TMPDIR read from it again), its own working folder and random seed.
``exit_child`` ends it as an interpreter would end, without ever returning into the code that
forked it. Only a process without threads or a running event loop may fork like this.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from kubelambda_runtime.worker.__main__ import main as worker_main

# Where a process's open descriptors are listed: Linux, then macOS and the BSDs.
_FD_LISTINGS = ("/proc/self/fd", "/dev/fd")


def fresh_handler(signum: int) -> Any:
    """The handler a new Python process starts with for ``signum``."""
    if signum == signal.SIGINT:
        return signal.default_int_handler
    if signum in (signal.SIGPIPE, signal.SIGXFSZ):  # the interpreter ignores both at start
        return signal.SIG_IGN
    return signal.SIG_DFL


def reset_signals() -> None:
    """Every handler back to a new interpreter's, no wake-up descriptor, nothing blocked."""
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        wanted = fresh_handler(signum)
        with contextlib.suppress(OSError, ValueError):
            if signal.getsignal(signum) is not wanted:
                signal.signal(signum, wanted)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def open_descriptors() -> list[int]:
    for listing in _FD_LISTINGS:
        with contextlib.suppress(OSError):
            return [int(name) for name in os.listdir(listing)]
    return list(range(3, os.sysconf("SC_OPEN_MAX")))


def close_descriptors(keep: Iterable[int]) -> None:
    """Close every descriptor but 0-2 and ``keep``: a child holding the zygote's socket, or
    its parent's end of a worker's socket, would keep the other side from seeing it close."""
    kept = {0, 1, 2, *keep}
    for fd in open_descriptors():  # one of them is the listing's own, closed already
        if fd not in kept:
            with contextlib.suppress(OSError):
                os.close(fd)


def become(
    *,
    environment: Mapping[str, str],
    cwd: str | None,
    keep: Iterable[int],
    argv: list[str],
    stdout: int | None = None,
    session: bool = True,
) -> None:
    """Turn a child just forked into a new process's likeness (see the module's docstring).
    ``stdout``: a descriptor to put on 1 and 2 (closed after), or None to keep them;
    ``session``: a session of its own, or (False) only a process group of its own."""
    if session:
        os.setsid()
    else:
        os.setpgid(0, 0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if stdout is not None:
        os.dup2(stdout, 1)
        os.dup2(stdout, 2)
        if stdout > 2:
            os.close(stdout)
    close_descriptors(keep)
    reset_signals()
    if cwd is not None:
        os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environment)
    # What the interpreter or the C library read from the environment once, read again.
    time.tzset()
    tempfile.tempdir = None  # gettempdir() looks at TMPDIR again
    random.seed()
    sys.argv = list(argv)


def exit_code(exc: SystemExit) -> int:
    """The exit status the interpreter gives a SystemExit."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(f"{exc.code}\n")
    return 1


def run_child(body: Callable[[], int]) -> NoReturn:
    """Run ``body`` in a child and end it with its status: atexit handlers run and the standard
    streams are flushed, as at an interpreter's exit; nothing returns into the parent's code."""
    code = 1
    try:
        code = body()
    except SystemExit as exc:
        code = exit_code(exc)
    except BaseException:
        traceback.print_exc()
    exit_child(code)


def exit_child(code: int) -> NoReturn:
    try:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    finally:
        os._exit(code & 0xFF)


class ForkedChild:
    """A forked child as ``subprocess.Popen`` shows one: its pid, and its exit code once it
    has been waited for (negative: the signal that ended it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self.returncode = 0  # reaped by someone else, as Popen then says
            else:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def fork_worker(
    args: list[str],
    *,
    environment: Mapping[str, str],
    cwd: str | None,
    pass_fds: tuple[int, ...],
) -> ForkedChild:
    """Start a worker by forking this process (which imported the worker's modules already):
    a ``Start`` for the server's pool (server/workerprocess.py)."""
    pid = os.fork()
    if pid == 0:
        become(
            environment=environment,
            cwd=cwd,
            keep=pass_fds,
            argv=[worker_main.__code__.co_filename, *args],
            session=False,
        )
        run_child(lambda: worker_main(["kubelambda_runtime.worker", *args]))
    return ForkedChild(pid)


__all__ = [
    "ForkedChild",
    "become",
    "close_descriptors",
    "exit_child",
    "fork_worker",
    "fresh_handler",
    "reset_signals",
    "run_child",
]
