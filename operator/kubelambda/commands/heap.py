"""Keeps what a server made while starting out of the garbage collector's full collections:
`kubelambda gateway`, `kubelambda dispatcher` and `kubelambda local` call `freeze_startup_heap`
once they serve.

A started local mode holds about 90,000 objects the collector tracks (modules, models, routes,
clients). A full (generation 2) collection walks them all while the event loop answers nothing:
80 to 100 ms of CPU measured in a started `kubelambda local --nats` on this project's shared
2-core machine, against 0.04 ms once they are frozen; the 202 of an Event invocation may take
10 ms at p99. Frozen objects are skipped by every collection and still freed by reference
counting; everything made later is collected as before.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

__all__ = ["GC_FREEZE_ENV", "freeze_startup_heap"]

# "0" leaves the heap unfrozen: benchmarks/async_events_gc.py compares both in one run.
GC_FREEZE_ENV = "KUBELAMBDA_GC_FREEZE"


def freeze_startup_heap(environ: Mapping[str, str] = os.environ) -> bool:
    """Collect what start-up left as garbage (so none of it is kept forever), then move every
    object alive into the permanent generation, which collections skip. Returns whether it
    froze (not when `environ` sets KUBELAMBDA_GC_FREEZE=0). One pause of a full collection,
    once, before traffic rather than in its midst; calling it again freezes what came since."""
    if environ.get(GC_FREEZE_ENV, "1").strip() == "0":
        return False
    gc.collect()
    gc.freeze()
    return True
