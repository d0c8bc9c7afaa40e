"""The readiness signal: the runtime writes its health once it is known, to a descriptor its
supervisor gave it (``--ready-fd``), so the supervisor need not poll /healthz.

``__main__`` starts ``announce`` once the server listens. The line is ``ready`` or
``init_failed`` (what /healthz would answer then), and the descriptor is closed after it; a
supervisor that reads end-of-file without a line knows the runtime died while it started.
``settled`` is the wait itself; server/presence.py waits the same way before it tells the
operator that the pod serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

# How often health is looked at again when no init is under way and it is still
# "initializing" (a slot between a failed init and the next one).
RECHECK_SECONDS = 0.01


async def settled(
    *,
    health: Callable[[], str],
    boots: Callable[[], Sequence[asyncio.Future[Any]]],
) -> str:
    """Wait until ``health()`` is no longer "initializing", waking at each end of one of
    ``boots()`` (the inits under way), and return it: "ready" or "init_failed"."""
    while (status := health()) == "initializing":
        running = [boot for boot in boots() if not boot.done()]
        if running:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(RECHECK_SECONDS)
    return status


async def announce(
    fd: int,
    *,
    health: Callable[[], str],
    boots: Callable[[], Sequence[asyncio.Future[Any]]],
) -> str:
    """Wait until the health is known (``settled``); write it on ``fd`` with a newline, close
    ``fd``, and return it. A reader that is gone is not an error: the runtime serves on."""
    try:
        status = await settled(health=health, boots=boots)
        with contextlib.suppress(OSError):  # EPIPE: nobody reads it any more
            os.write(fd, f"{status}\n".encode())
        return status
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
