"""The gateway's use of glibc's malloc: large freed blocks go back to the system at once, so
the process's memory falls again after answers of a few MB. UpstreamPool calls it as it is
made (every answer passes through the pool).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["give_large_blocks_back"]

# Blocks from this size up are mapped and unmapped on their own by glibc's malloc.
_MMAP_THRESHOLD = 1024 * 1024


def give_large_blocks_back() -> None:
    """Have glibc's malloc return each freed block of an MiB or more to the system at once.

    By default glibc raises its mmap threshold to the size of each large block freed (up
    to 32 MiB): after the first answer of a few MB, the next ones come from the heap, which
    keeps its freed space, so the gateway's RSS stays at its peak once they are gone
    (benchmarks/gateway_abuse.py, 200 unread 5 MB answers: 217 MiB after, 83 MiB with a
    fixed threshold). Fixing the threshold turns that adjustment off. Elsewhere, nothing.
    """
    if sys.platform != "linux":
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc
    mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
