"""Starting a worker process: used by ``__main__`` for the first workers before it imports the
server (asyncio, the pool, the HTTP server), and by ``workerprocess.WorkerProcess.spawn`` for
every replacement. Imports nothing heavy, so the first workers' imports and init overlap the
server's own imports instead of waiting for them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Protocol

from kubelambda_runtime.wire import config
from kubelambda_runtime.wire.board import Board


class Started(Protocol):
    """A started worker process, as the server waits for it: a ``subprocess.Popen``, or a
    forked child that behaves like one."""

    @property
    def pid(self) -> int: ...

    # Set by whoever reaps it (the server reaps with os.wait4, to learn its memory use).
    returncode: int | None

    def wait(self) -> int: ...


class Start(Protocol):
    """Starts ``python -m kubelambda_runtime.worker ARGS`` (or its equivalent) with exactly
    ``environment``, in ``cwd``, holding ``pass_fds`` besides 0-2, in a process group of its own
    in the server's session."""

    def __call__(
        self,
        args: list[str],
        *,
        environment: Mapping[str, str],
        cwd: str | None,
        pass_fds: tuple[int, ...],
    ) -> Started: ...


def exec_worker(
    args: list[str],
    *,
    environment: Mapping[str, str],
    cwd: str | None,
    pass_fds: tuple[int, ...],
) -> subprocess.Popen[bytes]:
    """A worker in a new Python process."""
    return subprocess.Popen(
        [
            sys.executable,
            # Isolated, as the server: the runtime's modules come from where it is
            # installed, never from the task root (its cwd) or the function's
            # PYTHONPATH; the loader puts those on the path for the handler.
            "-I",
            "-u",
            "-m",
            "kubelambda_runtime.worker",
            *args,
        ],
        pass_fds=pass_fds,
        env=dict(environment),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        # Its own process group, which a kill ends at once with the rest of its tree, in the
        # server's session. Where the kernel shares the CPU out by session (autogroup, on by
        # default in desktop distributions), a session of its own made each busy worker a
        # group with as large a share as the gateway's: a function with 32 of them took 32
        # shares of the machine to the gateway's one in local mode. In a pod, the pod's
        # cgroup is the group either way.
        process_group=0,
    )


def start_process(
    environment: Mapping[str, str], *, cwd: str, board: Board, slot: int, start: Start
) -> tuple[Started, socket.socket]:
    """Start slot ``slot``'s worker: its process, and the server's end of its socket."""
    ours, theirs = socket.socketpair()
    with theirs:
        started = start(
            [str(theirs.fileno()), str(board.fd), str(slot)],
            environment=environment,
            cwd=cwd if os.path.isdir(cwd) else None,
            pass_fds=(theirs.fileno(), board.fd),
        )
    return started, ours


def start_first(
    settings: config.Settings, *, environment: Mapping[str, str], board: Board, start: Start
) -> list[tuple[Started, socket.socket]]:
    """Every slot's first worker, as the pool would start it (``Pool.adopt`` takes them)."""
    started = []
    for slot in range(settings.concurrency):
        env = config.worker_environment(
            settings, base=environment, log_stream_name=config.new_log_stream_name(settings)
        )
        board.idle(slot)
        started.append(
            start_process(env, cwd=settings.task_root, board=board, slot=slot, start=start)
        )
    return started
