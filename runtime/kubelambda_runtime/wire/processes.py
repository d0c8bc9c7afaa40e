"""Process trees read from /proc, and the child-subreaper flag: how the server
(server/descendants.py) and each worker's keeper (worker/keeper.py) find everything an
execution environment started, so that none of it outlives the environment.

Linux only: elsewhere there is no /proc to read and no subreaper, and both do without.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterable
from typing import NamedTuple

# prctl(2): orphaned descendants are reparented to the nearest ancestor with this flag set,
# instead of to PID 1. Not inherited by fork(2) children.
PR_SET_CHILD_SUBREAPER = 36


class Process(NamedTuple):
    """One line of the process table: what /proc/PID/stat says of a process."""

    pid: int
    ppid: int
    pgid: int
    state: str  # "Z" for a zombie: dead, waiting for its parent to reap it


def become_child_subreaper(*, pid: int | None = None) -> bool:
    """Have this process (``pid`` is its own, given by tests) adopt its orphaned descendants;
    False where that cannot be."""
    if not sys.platform.startswith("linux"):
        return False
    if (os.getpid() if pid is None else pid) == 1:
        # The init of its PID namespace (the runtime as a container's entrypoint) adopts every
        # orphan in it already: no prctl, so no ctypes to import on each cold start.
        return True
    try:
        import ctypes  # here, not at the top: only a process that becomes one pays for it

        libc = ctypes.CDLL(None, use_errno=True)
        one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, one, zero, zero, zero)) == 0
    except (OSError, AttributeError):
        return False


def snapshot(proc: str = "/proc") -> dict[int, Process]:
    """Every process now, by pid; empty without /proc. Processes that end while it is read
    are left out."""
    try:
        names = os.listdir(proc)
    except OSError:
        return {}
    table: dict[int, Process] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as stat:
                line = stat.read().decode(errors="replace")
        except OSError:
            continue
        # "pid (comm) state ppid pgid ...": comm may hold spaces and parentheses.
        _, paren, rest = line.rpartition(")")
        fields = rest.split()
        if not paren or len(fields) < 3 or not (fields[1].isdigit() and fields[2].isdigit()):
            continue
        table[int(name)] = Process(int(name), int(fields[1]), int(fields[2]), fields[0])
    return table


def children(table: dict[int, Process], pid: int) -> list[int]:
    return [process.pid for process in table.values() if process.ppid == pid]


def descendants(table: dict[int, Process], pid: int) -> list[int]:
    """Children of ``pid``, their children, and so on (not ``pid`` itself)."""
    by_parent: dict[int, list[int]] = {}
    for process in table.values():
        by_parent.setdefault(process.ppid, []).append(process.pid)
    found: list[int] = []
    seen = {pid}
    parents = [pid]
    while parents:
        for child in by_parent.get(parents.pop(), ()):
            if child not in seen:
                seen.add(child)
                found.append(child)
                parents.append(child)
    return found


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each of ``pids``; one already gone, or not ours to kill, is passed over."""
    for pid in pids:
        if pid <= 0:  # kill(0) or kill(-1) would signal whole groups
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def high_water_kb(pids: Iterable[int], proc: str = "/proc") -> int | None:
    """The largest resident-set high-water mark (VmHWM, in kB) among ``pids``, what
    ``getrusage``'s ru_maxrss says of each: how much memory an execution environment used at
    most, read while its processes live. None when none of them can be read (gone, a zombie,
    or no /proc)."""
    found: int | None = None
    for pid in pids:
        try:
            with open(f"{proc}/{pid}/status", "rb") as status:
                text = status.read()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(b"VmHWM:"):
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    found = max(found or 0, int(fields[1]))
                break
    return found
