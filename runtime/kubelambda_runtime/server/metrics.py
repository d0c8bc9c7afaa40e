"""The runtime's Prometheus metrics, counted as plain numbers and rendered on scrape.

The server counts on its hot path with integer increments (endpoints.py, and the pool's
outcomes); ``prometheus_client`` is imported only when ``/metrics`` is first scraped, which
keeps it off the start-up path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubelambda_runtime.wire.histogram import DURATION_BUCKETS, Histogram

INIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RuntimeStats:
    """Everything the runtime counts: invocations by outcome, durations, init durations."""

    def __init__(self, *, namespace: str, function: str) -> None:
        self.labels = {"namespace": namespace, "function": function}
        self.invocations: dict[str, int] = {}
        self.duration = Histogram(DURATION_BUCKETS)
        self.init = Histogram(INIT_BUCKETS)
        # 1 while the runtime's last init failed (its invocations answer the init error): the
        # pod stays Ready, as Lambda keeps invoking such a function, so this is how it shows.
        self.init_failed = 0

    def count(self, outcome: str, duration_s: float) -> None:
        self.invocations[outcome] = self.invocations.get(outcome, 0) + 1
        if outcome not in ("busy", "bad_request"):
            self.duration.observe(duration_s)

    def plus(self, invocations: dict[str, int], duration: Histogram) -> RuntimeStats:
        """These counts with more added (what the workers counted on the board)."""
        total = RuntimeStats(**self.labels)
        for outcome in {*self.invocations, *invocations}:
            total.invocations[outcome] = self.invocations.get(outcome, 0) + invocations.get(
                outcome, 0
            )
        total.duration = self.duration.plus(duration.counts, duration.total)
        total.init = self.init
        total.init_failed = self.init_failed
        return total


class _Collector:
    def __init__(self, stats: RuntimeStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stats = self._stats
        names, values = list(stats.labels), list(stats.labels.values())
        invocations = CounterMetricFamily(
            "kubelambda_runtime_invocations",
            "Invocations handled by this runtime, by outcome.",
            labels=[*names, "outcome"],
        )
        for outcome, count in sorted(stats.invocations.items()):
            invocations.add_metric([*values, outcome], count)
        yield invocations
        init_failed = GaugeMetricFamily(
            "kubelambda_runtime_init_failed",
            "1 while the function's init fails (invocations answer its error), else 0.",
            labels=names,
        )
        init_failed.add_metric(values, stats.init_failed)
        yield init_failed
        for name, doc, histogram in (
            ("kubelambda_runtime_duration_seconds", "Handler run time.", stats.duration),
            ("kubelambda_runtime_init_seconds", "Init (handler import) time.", stats.init),
        ):
            family = HistogramMetricFamily(name, doc, labels=names)
            family.add_metric(values, histogram.cumulative(), histogram.total)
            yield family


def render(stats: RuntimeStats) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``stats`` and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(stats))
    return generate_latest(registry), CONTENT_TYPE_LATEST
