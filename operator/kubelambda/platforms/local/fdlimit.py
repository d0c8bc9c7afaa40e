"""Local mode at its file-descriptor limit: one line when the process runs out of descriptors,
one when it has some again, however long it stays there.

`kubelambda local` runs `watch_descriptors` beside the gateway. At the limit nothing else
reports it: the event loop (uvloop) drops connections it cannot accept without a word, and
the gateway answers 503 to requests that need a new connection to an instance.
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
from collections.abc import Callable

__all__ = ["DescriptorLimit", "open_descriptors", "watch_descriptors"]

# Where a process's open descriptors are listed: Linux, then macOS and the BSDs.
_LISTINGS = ("/proc/self/fd", "/dev/fd")
_EXHAUSTED = (errno.EMFILE, errno.ENFILE)


def open_descriptors() -> int | None:
    """How many descriptors this process has open: -1 when it has none left to even look
    (the listing needs one), None where the system does not list them."""
    for listing in _LISTINGS:
        try:
            return len(os.listdir(listing)) - 1  # not counting the listing's own
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno in _EXHAUSTED:
                return -1
            return None
    return None


def descriptor_limit() -> int | None:
    """The process's soft RLIMIT_NOFILE; None when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class DescriptorLimit:
    """Turns samples of the descriptors in use into two lines per episode: out (at most 1%
    of the limit left), and available again (10% free: so a process hovering at its limit
    does not say so every second)."""

    def __init__(self, output: Callable[[str], None]) -> None:
        self._output = output
        self.exhausted = False

    def observe(self, in_use: int, limit: int) -> None:
        """`in_use` descriptors of `limit`; -1: none left (nothing could be counted)."""
        if in_use < 0:
            in_use = limit
        spare = limit - in_use
        if not self.exhausted and spare <= max(1, limit // 100):
            self.exhausted = True
            self._output(
                f"kubelambda local: out of file descriptors ({in_use} of {limit} open): new "
                "connections are dropped, and requests that need a new connection to an "
                "instance are answered 503, until some close; raise the limit (ulimit -n) "
                "to hold more at once"
            )
        elif self.exhausted and spare >= max(2, limit // 10):
            self.exhausted = False
            self._output(
                f"kubelambda local: file descriptors available again ({in_use} of {limit} open)"
            )


async def watch_descriptors(
    output: Callable[[str], None],
    *,
    interval: float = 1.0,
    count: Callable[[], int | None] = open_descriptors,
    limit: Callable[[], int | None] = descriptor_limit,
) -> None:
    """Sample the descriptors in use every `interval` seconds until cancelled."""
    state = DescriptorLimit(output)
    while True:
        in_use, most = count(), limit()
        if in_use is None:
            return  # this system does not say: nothing to watch
        if most is not None:
            state.observe(in_use, most)
        await asyncio.sleep(interval)  # a period, not a wait for a state
