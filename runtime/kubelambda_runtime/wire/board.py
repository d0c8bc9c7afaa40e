"""The board: a page of shared memory where each worker posts what it is doing, and counts.

A worker that serves a connection handed to it (see worker/direct.py) answers invocations
without a word to the server, so the server learns from the board instead: which invocation
runs since when and until which deadline (to stop it when the deadline passes, or to answer
for it when the worker dies), and how many invocations ended how (for /metrics). Writing a
few bytes of shared memory costs no system call; that is the point.

The server's pool creates the board (a memfd) before it spawns workers and passes its
descriptor to each; slot ``i`` belongs to the worker of execution slot ``i`` and outlives it,
so the counts survive a worker being replaced. Each field has one writer (the slot's
worker), and the server reads a slot's state only after its worker stopped, or to decide
whether to stop it; a torn read of a deadline can only delay a timeout by one watch period.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from typing import Final, NamedTuple

from kubelambda_runtime.wire.histogram import DURATION_BUCKETS, Histogram

IDLE: Final = 0
RUNNING: Final = 1  # the handler runs; the answer is not written yet
RESPONDING: Final = 2  # the answer is being written: too late to answer for the worker

OUTCOMES: Final = ("success", "error", "bad_request")  # what workers count themselves

_BUCKETS = len(DURATION_BUCKETS) + 1
# state, deadline (epoch s), started (perf_counter s: CLOCK_MONOTONIC, the same in every
# process), request id, invocations begun, outcome counts, duration histogram counts,
# duration total.
_SLOT = struct.Struct(f"<I4xdd64sQ{len(OUTCOMES)}Q{_BUCKETS}Qd")
_STATE = struct.Struct("<I")
_RUN = struct.Struct("<I4xdd64s")
_STARTED = struct.Struct("<d")
_STARTED_AT = 16  # after the state, its padding and the deadline
_BEGUN_AT = _RUN.size
_COUNTS_AT = _BEGUN_AT + 8


class Posting(NamedTuple):
    """What a slot's worker last posted about its current invocation."""

    state: int
    deadline: float
    started: float
    request_id: str


class Board:
    def __init__(self, fd: int, slots: int) -> None:
        self.fd = fd
        self.slots = slots
        self._map = mmap.mmap(fd, max(slots, 1) * _SLOT.size)

    @classmethod
    def create(cls, slots: int) -> Board:
        fd = os.memfd_create("kubelambda-board")  # close-on-exec: workers get it by pass_fds
        os.ftruncate(fd, max(slots, 1) * _SLOT.size)
        return cls(fd, slots)

    # --- the worker's side ---------------------------------------------------------------

    def begin(self, slot: int, *, request_id: str, deadline: float, started: float) -> None:
        """Post that an invocation runs (the state last, so it never names a stale one)."""
        offset = slot * _SLOT.size
        _RUN.pack_into(self._map, offset, IDLE, deadline, started, request_id.encode()[:64])
        _STATE.pack_into(self._map, offset, RUNNING)
        self._add(offset + _BEGUN_AT, 1)

    def finish(self, slot: int, *, outcome: str, duration: float) -> None:
        """Count the invocation and post that its answer is being written."""
        offset = slot * _SLOT.size
        counts = offset + _COUNTS_AT
        index = OUTCOMES.index(outcome)
        self._add(counts + 8 * index, 1)
        if outcome != "bad_request":
            bucket = bisect.bisect_left(DURATION_BUCKETS, duration)  # as Histogram.observe
            self._add(counts + 8 * (len(OUTCOMES) + bucket), 1)
            total_at = counts + 8 * (len(OUTCOMES) + _BUCKETS)
            (total,) = struct.unpack_from("<d", self._map, total_at)
            struct.pack_into("<d", self._map, total_at, total + duration)
        _STATE.pack_into(self._map, offset, RESPONDING)

    def idle(self, slot: int) -> None:
        _STATE.pack_into(self._map, slot * _SLOT.size, IDLE)

    def _add(self, at: int, amount: int) -> None:
        (value,) = struct.unpack_from("<Q", self._map, at)
        struct.pack_into("<Q", self._map, at, value + amount)

    # --- the server's side ---------------------------------------------------------------

    def posting(self, slot: int) -> Posting:
        state, deadline, started, request_id = _RUN.unpack_from(self._map, slot * _SLOT.size)
        return Posting(state, deadline, started, request_id.rstrip(b"\0").decode())

    def state(self, slot: int) -> int:
        (state,) = _STATE.unpack_from(self._map, slot * _SLOT.size)
        return int(state)

    def started(self, slot: int) -> float:
        """When the slot's last invocation began (perf_counter seconds; 0.0 before the first)."""
        (started,) = _STARTED.unpack_from(self._map, slot * _SLOT.size + _STARTED_AT)
        return float(started)

    def begun(self, slot: int) -> int:
        """How many invocations the slot's workers have begun: it moves when a worker picks
        up what the server handed it."""
        (count,) = struct.unpack_from("<Q", self._map, slot * _SLOT.size + _BEGUN_AT)
        return int(count)

    def counts(self) -> tuple[dict[str, int], Histogram]:
        """Every slot's counts summed: invocations by outcome, and their durations."""
        outcomes = dict.fromkeys(OUTCOMES, 0)
        durations = Histogram(DURATION_BUCKETS)
        for slot in range(self.slots):
            fields = _SLOT.unpack_from(self._map, slot * _SLOT.size)[5:]
            for name, count in zip(OUTCOMES, fields, strict=False):
                outcomes[name] += count
            buckets = fields[len(OUTCOMES) : len(OUTCOMES) + _BUCKETS]
            durations = durations.plus(buckets, fields[-1])
        return {name: count for name, count in outcomes.items() if count}, durations

    def close(self) -> None:
        self._map.close()
        os.close(self.fd)
