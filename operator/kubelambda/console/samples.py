"""Local mode's stand-in for Prometheus: the gateway's own metrics read in process, and a bounded
ring of their samples for the last hour's figures and charts.

`kubelambda local` has no Prometheus. `SampleRing` reads the gateway's registry (the metric
families /metrics serves) every `interval` seconds and keeps one hour of samples; the local
source (`local.py`) asks it for `figures` and `charts`, computed as the cluster's PromQL does.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

from kubelambda.api.identity import FunctionKey
from kubelambda.console.figures import WINDOW_SECONDS, Chart, Figures, Series, quantile

__all__ = ["Counters", "SampleRing", "snapshot_of"]

_PREFIX = "kubelambda_gateway_"


@dataclass
class Counters:
    """One function's gateway metrics at one moment."""

    invocations: float = 0.0
    gb_seconds: float = 0.0
    requests: float = 0.0
    errors: float = 0.0
    duration: dict[float, float] = field(default_factory=dict)  # le → cumulative count
    cold_starts: float = 0.0
    cold_start_sum: float = 0.0
    in_flight: float = 0.0
    held: float = 0.0
    function_errors: float | None = None  # from the runtimes (runtimes.py), when read


Snapshot = Mapping[FunctionKey, Counters]
Charts = dict[FunctionKey, tuple[Chart, ...]]


def snapshot_of(metrics: Iterable[Metric]) -> dict[FunctionKey, Counters]:
    """The gateway's metric families (a registry's `collect()`) as Counters per function;
    requests that matched no function are left out."""
    found: dict[FunctionKey, Counters] = {}
    for metric in metrics:
        for sample in metric.samples:
            namespace, name = sample.labels.get("namespace"), sample.labels.get("function")
            if not namespace or not name or not sample.name.startswith(_PREFIX):
                continue
            counters = found.setdefault(FunctionKey(namespace, name), Counters())
            metric_name, value = sample.name[len(_PREFIX) :], float(sample.value)
            if metric_name == "requests_total":
                counters.requests += value
                if sample.labels.get("code", "").startswith("5"):
                    counters.errors += value
            elif metric_name == "billed_invocations_total":
                counters.invocations = value
            elif metric_name == "billed_gb_seconds_total":
                counters.gb_seconds = value
            elif metric_name == "request_duration_seconds_bucket":
                counters.duration[float(sample.labels["le"])] = value
            elif metric_name == "cold_starts_total":
                counters.cold_starts = value
            elif metric_name == "cold_start_seconds_sum":
                counters.cold_start_sum = value
            elif metric_name == "in_flight_requests":
                counters.in_flight = value
            elif metric_name == "queued_requests":
                counters.held = value
    return found


def _increase(now: float, before: float) -> float:
    # A counter that went down was reset (a new process): all of it is new, as in PromQL.
    return now - before if now >= before else now


def _figures(now: Counters, before: Counters | None) -> Figures:
    before = before or Counters()
    function_errors = None
    if now.function_errors is not None:
        function_errors = _increase(now.function_errors, before.function_errors or 0.0)
    buckets = sorted(
        (bound, _increase(count, before.duration.get(bound, 0.0)))
        for bound, count in now.duration.items()
    )
    cold_starts = _increase(now.cold_starts, before.cold_starts)
    cold_sum = _increase(now.cold_start_sum, before.cold_start_sum)
    return Figures(
        invocations=_increase(now.invocations, before.invocations),
        gb_seconds=_increase(now.gb_seconds, before.gb_seconds),
        errors=_increase(now.errors, before.errors),
        function_errors=function_errors,
        p50_seconds=quantile(0.5, buckets),
        p99_seconds=quantile(0.99, buckets),
        cold_starts=cold_starts,
        cold_start_seconds=cold_sum / cold_starts if cold_starts else None,
        in_flight=now.in_flight,
        held=now.held,
    )


class SampleRing:
    """Samples of the gateway's metrics, at most one window's worth (a bounded deque)."""

    def __init__(
        self,
        collect: Callable[[], Iterable[Metric]],
        *,
        wall: Callable[[], float],
        interval: float = 10.0,
        window: float = WINDOW_SECONDS,
        function_errors: Callable[[], Mapping[FunctionKey, float]] | None = None,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`function_errors`: running totals per function (runtimes.py) put in each sample;
        `refresh`: what `run` awaits before each sample (reading them anew)."""
        if interval <= 0:
            raise ValueError(f"the sample interval must be > 0 seconds, not {interval}")
        self._collect = collect
        self._function_errors = function_errors
        self._refresh = refresh
        self._wall = wall
        self.interval = interval
        self._window = window
        # One more than the window holds, so the oldest sample is at or before its start.
        self._samples: deque[tuple[float, Snapshot]] = deque(
            maxlen=math.ceil(window / interval) + 2
        )

    def __len__(self) -> int:
        return len(self._samples)

    def _snapshot(self) -> dict[FunctionKey, Counters]:
        found = snapshot_of(self._collect())
        if self._function_errors is not None:
            for key, errors in self._function_errors().items():
                found.setdefault(key, Counters()).function_errors = errors
        return found

    def sample(self) -> tuple[float, Snapshot]:
        """Read the metrics now and keep the sample."""
        taken = (self._wall(), self._snapshot())
        self._samples.append(taken)
        return taken

    async def run(self) -> None:
        """Sample every `interval` seconds until cancelled."""
        while True:
            if self._refresh is not None:
                await self._refresh()
            self.sample()
            await asyncio.sleep(self.interval)  # a period, not a wait for a condition

    def _baseline(self, now: float) -> Snapshot | None:
        """The oldest sample within the window (None: none kept, counting from zero)."""
        start = now - self._window
        for taken, snapshot in self._samples:
            if taken >= start - self.interval:
                return snapshot
        return None

    def read(
        self,
    ) -> tuple[float, dict[FunctionKey, Figures], dict[FunctionKey, tuple[Chart, ...]]]:
        """A fresh sample's time, each function's figures from the window's start to it, and
        its charts (the fresh sample their last point; it is not kept)."""
        now, current = self._wall(), self._snapshot()
        baseline = self._baseline(now) or {}
        figures = {key: _figures(counters, baseline.get(key)) for key, counters in current.items()}
        samples = [(t, s) for t, s in self._samples if t >= now - self._window - self.interval]
        # A rate over less than a second is noise: the last kept sample ends the charts then.
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, current))
        return now, figures, self._charts(samples)

    @staticmethod
    def _charts(samples: list[tuple[float, Snapshot]]) -> Charts:
        """Per function: requests and 5xx answers per minute, and requests in flight and held,
        between consecutive samples."""
        keys = {key for _, snapshot in samples for key in snapshot}
        charts: dict[FunctionKey, tuple[Chart, ...]] = {}
        for key in sorted(keys):
            requests: list[tuple[float, float]] = []
            errors: list[tuple[float, float]] = []
            in_flight: list[tuple[float, float]] = []
            held: list[tuple[float, float]] = []
            for (t0, s0), (t1, s1) in itertools.pairwise(samples):
                c0, c1 = s0.get(key, Counters()), s1.get(key, Counters())
                minutes = (t1 - t0) / 60 or 1.0
                requests.append((t1, _increase(c1.requests, c0.requests) / minutes))
                errors.append((t1, _increase(c1.errors, c0.errors) / minutes))
                in_flight.append((t1, c1.in_flight))
                held.append((t1, c1.held))
            charts[key] = (
                Chart(
                    "requests per minute",
                    "/min",
                    (Series("requests", tuple(requests)), Series("5xx", tuple(errors))),
                ),
                Chart(
                    "concurrency",
                    "",
                    (Series("in flight", tuple(in_flight)), Series("held", tuple(held))),
                ),
            )
        return charts
