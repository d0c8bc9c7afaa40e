"""The gateway's Prometheus metrics (DESIGN.md), labelled by namespace and function.

The public app records every request, the invoker records cold starts and billed usage;
in-flight and queued requests are read from the activator when /metrics is scraped. Request
counts and durations are plain counters kept per function and turned into metric families at scrape
time: the event loop is the only writer, so the hot path takes no lock.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from kubelambda.api.identity import FunctionKey
from kubelambda.gateway.functionstate import FunctionLoad
from kubelambda.gateway.limits import REASON_LABELS

__all__ = ["BILLED_DURATION_HEADER", "CONTENT_TYPE", "GatewayMetrics", "billed_ms", "gb_seconds"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

_LABELS: Final = ("namespace", "function")
# Lambda allows up to 900 s, so the tail buckets reach that far.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
COLD_START_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_NO_FUNCTION: Final = FunctionKey("", "")
# The runtime's billed duration of an invocation, whole milliseconds (docs/contracts.md).
BILLED_DURATION_HEADER: Final = b"x-kubelambda-billed-duration-ms"
_MB_MS_PER_GB_SECOND: Final = 1024 * 1000

LoadSource = Callable[[], Mapping[FunctionKey, FunctionLoad]]
# Invocations a function's own limits refused, by Lambda's ThrottleReason (limits.py).
ThrottleSource = Callable[[], Mapping[FunctionKey, Mapping[str, int]]]


def billed_ms(duration_ms: float) -> int:
    """Lambda's billed duration: rounded up to the next millisecond, at least 1 ms."""
    return max(math.ceil(duration_ms), 1)


def gb_seconds(*, duration_ms: int, memory_mb: int) -> float:
    """What Lambda bills for `duration_ms` at `memory_mb`: GB-seconds, a GB being 1024 MB."""
    return duration_ms * memory_mb / _MB_MS_PER_GB_SECOND


class _Histogram:
    """Observations by bucket (non-cumulative; the last is +Inf), with their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left finds the first bound >= value: Prometheus buckets are "le".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative = list(accumulate(self.counts))
        buckets = [(str(float(b)), c) for b, c in zip(self.bounds, cumulative, strict=False)]
        buckets.append(("+Inf", cumulative[-1]))
        family.add_metric(labels, buckets, self.sum)


class _FunctionStats:
    __slots__ = (
        "billed_invocations",
        "billed_mb_ms",
        "codes",
        "cold_start_seconds",
        "cold_starts",
        "duration",
        "s3_events_accepted",
        "s3_events_received",
    )

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.duration = _Histogram(DURATION_BUCKETS)
        self.cold_starts = 0
        self.cold_start_seconds = _Histogram(COLD_START_BUCKETS)
        self.s3_events_received = 0
        self.s3_events_accepted = 0
        self.billed_invocations = 0
        # MB times ms, an integer: the sum stays exact however many invocations are added.
        self.billed_mb_ms = 0


class _Collector(Collector):
    def __init__(
        self, metrics: GatewayMetrics, load: LoadSource, throttles: ThrottleSource | None
    ) -> None:
        self._metrics = metrics
        self._load = load
        self._throttles = throttles

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "kubelambda_gateway_requests",
            "Requests answered by the gateway, by status code.",
            labels=(*_LABELS, "code"),
        )
        duration = HistogramMetricFamily(
            "kubelambda_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer, including any hold.",
            labels=_LABELS,
        )
        cold_starts = CounterMetricFamily(
            "kubelambda_gateway_cold_starts",
            "Requests that were held until an instance of a function at zero became ready.",
            labels=_LABELS,
        )
        cold_seconds = HistogramMetricFamily(
            "kubelambda_gateway_cold_start_seconds",
            "How long requests waited for a cold start.",
            labels=_LABELS,
        )
        s3_received = CounterMetricFamily(
            "kubelambda_gateway_s3_events_received",
            "S3 notification records that matched one of the function's bucket Triggers.",
            labels=_LABELS,
        )
        s3_accepted = CounterMetricFamily(
            "kubelambda_gateway_s3_events_accepted",
            "Of those, the ones recorded for delivery (the notification was acknowledged).",
            labels=_LABELS,
        )
        billed = CounterMetricFamily(
            "kubelambda_gateway_billed_invocations",
            "Invocations a function's instance answered (Lambda's billed requests).",
            labels=_LABELS,
        )
        billed_gb_seconds = CounterMetricFamily(
            "kubelambda_gateway_billed_gb_seconds",
            "Billed duration (rounded up to 1 ms) times the function's memory, in GB-seconds.",
            labels=_LABELS,
        )
        for key, stats in self._metrics.stats.items():
            labels = [key.namespace, key.name]
            if key != _NO_FUNCTION:
                billed.add_metric(labels, stats.billed_invocations)
                billed_gb_seconds.add_metric(
                    labels, gb_seconds(duration_ms=stats.billed_mb_ms, memory_mb=1)
                )
            for code, count in sorted(stats.codes.items()):
                requests.add_metric([*labels, str(code)], count)
            if stats.codes:
                stats.duration.add_to(duration, labels)
            if stats.cold_starts:
                cold_starts.add_metric(labels, stats.cold_starts)
                stats.cold_start_seconds.add_to(cold_seconds, labels)
            if stats.s3_events_received:
                s3_received.add_metric(labels, stats.s3_events_received)
                s3_accepted.add_metric(labels, stats.s3_events_accepted)
        in_flight = GaugeMetricFamily(
            "kubelambda_gateway_in_flight_requests",
            "Requests sent to an instance and not yet answered.",
            labels=_LABELS,
        )
        queued = GaugeMetricFamily(
            "kubelambda_gateway_queued_requests",
            "Requests held because no instance is ready or every slot is busy.",
            labels=_LABELS,
        )
        ready = GaugeMetricFamily(
            "kubelambda_gateway_ready_instances",
            "Ready instances of the function, as the gateway knows them.",
            labels=_LABELS,
        )
        for key, load in self._load().items():
            labels = [key.namespace, key.name]
            in_flight.add_metric(labels, load.in_flight)
            queued.add_metric(labels, load.queued)
            ready.add_metric(labels, load.ready_instances)
            if key not in self._metrics.stats:
                # At 0 before the first invocation, so that increase() counts that one too.
                billed.add_metric(labels, 0)
                billed_gb_seconds.add_metric(labels, 0.0)
        yield from (requests, duration, cold_starts, cold_seconds, in_flight, queued, ready)
        yield from (s3_received, s3_accepted, billed, billed_gb_seconds)
        if self._throttles is not None:
            yield self._throttle_family(self._throttles())

    @staticmethod
    def _throttle_family(counts: Mapping[FunctionKey, Mapping[str, int]]) -> Metric:
        # Lambda's Throttles metric; its 429s are also in kubelambda_gateway_requests_total.
        throttles = CounterMetricFamily(
            "kubelambda_gateway_throttles",
            "Invocations refused with 429 at once by the function's spec.reservedConcurrency "
            "(reason reserved_concurrency) or spec.throttling (reason rate).",
            labels=(*_LABELS, "reason"),
        )
        for key, reasons in counts.items():
            for reason, count in sorted(reasons.items()):
                label = REASON_LABELS.get(reason, reason)
                throttles.add_metric([key.namespace, key.name, label], count)
        return throttles


class GatewayMetrics:
    """The counters of one gateway and their text exposition; call only on the event loop."""

    def __init__(self, *, load: LoadSource, throttles: ThrottleSource | None = None) -> None:
        self.stats: dict[FunctionKey, _FunctionStats] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self, load, throttles))

    def _stats(self, function: FunctionKey | None) -> _FunctionStats:
        key = function or _NO_FUNCTION
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = _FunctionStats()
        return stats

    def request(self, function: FunctionKey | None, code: int, seconds: float) -> None:
        """Count one answered request; `function` is None when none was routed to."""
        # Looked up here first: a call fewer for every request once a function was seen.
        stats = self.stats.get(function or _NO_FUNCTION) or self._stats(function)
        codes = stats.codes
        codes[code] = codes.get(code, 0) + 1
        duration = stats.duration  # observe(), written out: this runs for every request
        duration.counts[bisect_left(duration.bounds, seconds)] += 1
        duration.sum += seconds

    def cold_start(self, function: FunctionKey, seconds: float) -> None:
        stats = self._stats(function)
        stats.cold_starts += 1
        stats.cold_start_seconds.observe(seconds)

    def s3_events(self, function: FunctionKey, *, received: int, accepted: int) -> None:
        """Count bucket notification records for `function`: matched, and recorded."""
        stats = self._stats(function)
        stats.s3_events_received += received
        stats.s3_events_accepted += accepted

    def billed(self, function: FunctionKey, *, duration_ms: int, memory_mb: int) -> None:
        """Count one invocation an instance answered, billed `duration_ms` at `memory_mb`."""
        stats = self.stats.get(function) or self._stats(function)
        stats.billed_invocations += 1
        stats.billed_mb_ms += duration_ms * memory_mb

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
