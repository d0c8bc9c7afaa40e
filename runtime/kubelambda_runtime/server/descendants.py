"""The server's part in ending everything an execution environment started, with it.

A handler's processes can leave the worker's process group and session (``setsid``, a double
fork), which ``killpg`` misses; on Lambda nothing an environment started outlives its
timeout, crash or shutdown. Each worker's keeper (worker/keeper.py) ends what is left when its
worker exits; this module covers environments the server kills itself, keeper and all (a
timeout, an init past its limit), and the runtime's stop. ``__main__`` makes the server a
child subreaper (``adopt_orphans``), so what a killed environment leaves is reparented to the
server, not to PID 1: ``kill_environment`` kills an environment's whole process tree at once,
and ``Descendants.sweep`` kills and reaps every child of the server that is not a worker,
which only a dead environment can have left (a living one's orphans go to its keeper).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

from kubelambda_runtime.wire import processes

logger = logging.getLogger(__name__)

# How long a sweep keeps at killing and reaping before it leaves the rest to the next one;
# only a process SIGKILL cannot end (not ours, or stuck in the kernel) holds it that long.
SWEEP_SECONDS = 2.0


def adopt_orphans() -> bool:
    """Make the server the reaper of what its workers orphan; False where that cannot be."""
    return processes.become_child_subreaper()


def kill_environment(pid: int) -> None:
    """SIGKILL the worker process ``pid`` (its keeper, when it has one), its process group,
    and every process under it, even those in a session of their own, at once."""
    table = processes.snapshot()  # before the kill: the dead are reparented away from it
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    processes.kill_all([pid, *processes.descendants(table, pid)])


class Descendants:
    """The server's children: the workers, each waited for by its own ``Popen``, and any
    other, which a dead environment left behind and the sweep ends."""

    def __init__(self) -> None:
        self._workers: set[int] = set()

    def spawned(self, pid: int) -> None:
        """A worker: the sweep must leave it to the ``Popen`` that waits for it."""
        self._workers.add(pid)

    def reaped(self, pid: int) -> None:
        self._workers.discard(pid)

    async def sweep(self, *, within: float = SWEEP_SECONDS) -> list[int]:
        """Kill and reap every child of the server that is not a worker, with everything
        under it, until none is left or ``within`` seconds have passed; the pids reaped.

        It runs on the event loop, as spawning does, so a worker just spawned is always
        known to be one."""
        me = os.getpid()
        deadline = time.monotonic() + within
        reaped: list[int] = []
        while True:
            table = processes.snapshot()
            strays = [pid for pid in processes.children(table, me) if pid not in self._workers]
            if not strays:
                return reaped
            for pid in strays:
                processes.kill_all([pid, *processes.descendants(table, pid)])
            dying = []
            for pid in strays:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 (never blocks)
                except ChildProcessError:
                    continue
                if done:
                    reaped.append(pid)
                else:
                    dying.append(pid)
            if dying and time.monotonic() >= deadline:
                logger.warning(
                    "processes %s outlived their execution environment and could not be ended",
                    dying,
                )
                return reaped
            if dying:  # SIGKILL takes a moment; their children are reparented here meanwhile
                await asyncio.sleep(0.005)
