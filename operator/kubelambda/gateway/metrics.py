"""The gateway's Prometheus metrics (DESIGN.md), labelled by namespace and function.

The public app records requests, the invoker records cold starts; in-flight and queued
requests are read from the activator when /metrics is scraped, so they cost nothing per
request. Each gateway has its own registry, so several can live in one process (tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from kubelambda.gateway.activation import FunctionLoad
from kubelambda.gateway.platform import FunctionKey

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_LABELS = ("namespace", "function")
# Lambda allows up to 900 s, so the tail buckets reach that far.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
_COLD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_NO_FUNCTION = ("", "")

LoadSource = Callable[[], Mapping[FunctionKey, FunctionLoad]]


class _LoadCollector(Collector):
    """In-flight and held requests per function, read at scrape time."""

    def __init__(self, source: LoadSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
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
        for key, load in self._source().items():
            labels = [key.namespace, key.name]
            in_flight.add_metric(labels, load.in_flight)
            queued.add_metric(labels, load.queued)
        yield in_flight
        yield queued


class GatewayMetrics:
    """Counters and histograms of one gateway, and their text exposition."""

    def __init__(self, *, load: LoadSource) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "kubelambda_gateway_requests",
            "Requests answered by the gateway, by status code.",
            (*_LABELS, "code"),
            registry=self.registry,
        )
        self._duration = Histogram(
            "kubelambda_gateway_request_duration_seconds",
            "Time from a request's arrival to its answer, including any hold.",
            _LABELS,
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._cold_starts = Counter(
            "kubelambda_gateway_cold_starts",
            "Requests that were held until an instance of a function at zero became ready.",
            _LABELS,
            registry=self.registry,
        )
        self._cold_seconds = Histogram(
            "kubelambda_gateway_cold_start_seconds",
            "How long requests waited for a cold start.",
            _LABELS,
            buckets=_COLD_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LoadCollector(load))
        # labels() costs a lock and a tuple per call; keep the children at hand.
        self._request_children: dict[tuple[FunctionKey | None, int], Any] = {}
        self._duration_children: dict[FunctionKey | None, Any] = {}

    def request(self, function: FunctionKey | None, code: int, seconds: float) -> None:
        """Count one answered request; `function` is None when none was routed to."""
        counter = self._request_children.get((function, code))
        if counter is None:
            labels = (function.namespace, function.name) if function else _NO_FUNCTION
            counter = self._request_children[(function, code)] = self._requests.labels(
                *labels, str(code)
            )
        counter.inc()
        histogram = self._duration_children.get(function)
        if histogram is None:
            labels = (function.namespace, function.name) if function else _NO_FUNCTION
            histogram = self._duration_children[function] = self._duration.labels(*labels)
        histogram.observe(seconds)

    def cold_start(self, function: FunctionKey, seconds: float) -> None:
        self._cold_starts.labels(function.namespace, function.name).inc()
        self._cold_seconds.labels(function.namespace, function.name).observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
