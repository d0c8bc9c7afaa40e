"""Durations counted into buckets, as the server renders them."""

from __future__ import annotations

from kubelambda_runtime.wire.histogram import Histogram


def test_histogram_buckets_are_cumulative():
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert histogram.total == 3.65
