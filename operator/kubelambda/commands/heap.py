"""Keeps what a server made while starting out of the garbage collector's full collections,
and its young generation from being collected every 700 allocations: `kubelambda gateway`,
`kubelambda dispatcher` and `kubelambda local` call `freeze_startup_heap` once they serve.

A started local mode holds about 90,000 objects the collector tracks (modules, models, routes,
clients). A full (generation 2) collection walks them all while the event loop answers nothing:
80 to 100 ms of CPU measured in a started `kubelambda local --nats` on this project's shared
2-core machine, against 0.04 ms once they are frozen; the 202 of an Event invocation may take
10 ms at p99. Frozen objects are skipped by every collection and still freed by reference
counting; everything made later is collected as before.

Serving, the objects of the requests in flight survive collection after collection of the young
generation, and each walks them again: at 700 allocations (Python's threshold, a few requests'
worth) that was about 3% of the gateway's instructions per request with 256 connections
(benchmarks/gateway_instructions.py: 293k against 284k at YOUNG_THRESHOLD), and the middle
generation's collections took 5 to 58 ms under a burst's held requests. Cyclic garbage waits
for YOUNG_THRESHOLD allocations instead, a few megabytes at most.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping

__all__ = ["GC_FREEZE_ENV", "YOUNG_THRESHOLD", "freeze_startup_heap"]

# "0" leaves the heap unfrozen: benchmarks/async_events_gc.py compares both in one run.
GC_FREEZE_ENV = "KUBELAMBDA_GC_FREEZE"
# Allocations (less deallocations) between two collections of the youngest generation.
YOUNG_THRESHOLD = 10_000


def freeze_startup_heap(environ: Mapping[str, str] = os.environ) -> bool:
    """Collect what start-up left as garbage (so none of it is kept forever), then move every
    object alive into the permanent generation, which collections skip, and collect the young
    generation every YOUNG_THRESHOLD allocations. Returns whether it did (not when `environ`
    sets KUBELAMBDA_GC_FREEZE=0: Python's collector as it comes, for a comparison). One pause of
    a full collection, once, before traffic rather than in its midst; calling it again freezes
    what came since."""
    if environ.get(GC_FREEZE_ENV, "1").strip() == "0":
        return False
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return True
