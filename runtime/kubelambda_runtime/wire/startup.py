"""The variables a process reads from its environment once, when it starts: a process forked
from another (local mode's zygote, a warm pool's pod) has them as its parent read them, so only
a new process can apply other values. zygote.py and warmpool/ decide with ``startup_differences``
whether to fork or start one; warmpool/handoff.py starts the pool with only these."""

from __future__ import annotations

from collections.abc import Mapping

# Read by the dynamic loader, the C library or the interpreter (even with -I).
STARTUP_PREFIXES = ("LD_", "MALLOC_", "GLIBC_", "LC_")
STARTUP_VARIABLES = frozenset({"LANG", "LANGUAGE"})


def is_read_at_start(name: str) -> bool:
    return name in STARTUP_VARIABLES or name.startswith(STARTUP_PREFIXES)


def startup_differences(own: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The variables read at start whose value in ``wanted`` is not the forking process's
    (``own``)."""
    names = {*own, *wanted}
    return sorted(
        name for name in names if is_read_at_start(name) and own.get(name) != wanted.get(name)
    )
