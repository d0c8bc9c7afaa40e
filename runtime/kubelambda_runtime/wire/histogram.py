"""Durations counted into buckets: the histogram the server renders, and the bucket bounds a
worker counts into on the board (board.py), so the two add up.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def plus(self, counts: Sequence[int], total: float) -> Histogram:
        """A histogram with these bucket counts and total added."""
        summed = Histogram(self.buckets)
        summed.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
        summed.total = self.total + total
        return summed

    def cumulative(self) -> list[tuple[str, int]]:
        running = 0
        rows = []
        for bound, count in zip([*map(str, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            rows.append((bound, running))
        return rows
