"""Where the autoscaler's observations come from: the `MetricSource` seam, and a direct source.

`DirectSource` samples load counters it is handed (local mode hands it the gateway's
own) each tick and averages them over the stable and panic windows; the Prometheus
source (for clusters) answers the same `observe` from PromQL instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.decider import DEFAULT_TUNING, Observation, Tuning


@dataclass(frozen=True, slots=True)
class Load:
    """One function's load right now, as the gateway counts it."""

    in_flight: int
    queued: int
    requests_total: int


@dataclass(frozen=True, slots=True)
class Observations:
    """One tick's observations. When `complete`, a function missing from `functions` had no
    load (a source may list only the busy ones); otherwise missing means not known."""

    functions: Mapping[FunctionKey, Observation]
    complete: bool = False


class MetricSource(Protocol):
    async def observe(self, *, now: float) -> Observations | Mapping[FunctionKey, Observation]:
        """The latest observation of every function that has one; a plain mapping says
        nothing of the functions it leaves out (as `Observations` with complete False)."""
        ...


class _Window:
    """Samples of one function: (time, concurrency, requests so far, active), oldest first. A
    sample is active when a request was held or had come since the sample before."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int, int, bool]] = deque()

    def add(self, now: float, concurrency: int, requests_total: int, *, keep: float) -> None:
        before = self.samples[-1][2] if self.samples else requests_total
        active = concurrency > 0 or requests_total != before
        self.samples.append((now, concurrency, requests_total, active))
        while self.samples and self.samples[0][0] < now - keep:
            self.samples.popleft()

    def averages(self, now: float, seconds: float) -> tuple[float, float]:
        """Mean concurrency and requests per second over the last `seconds`. The concurrency
        is averaged from the window's first active sample on: idle time before a function's
        load began is not its load (as Knative averages over the data a window has), else a
        function woken from zero reads as a sixtieth of its load and is scaled down under it."""
        recent = [sample for sample in self.samples if sample[0] >= now - seconds]
        if not recent:
            return 0.0, 0.0
        start = next((i for i, sample in enumerate(recent) if sample[3]), len(recent))
        loaded = recent[start:]
        concurrency = sum(sample[1] for sample in loaded) / len(loaded) if loaded else 0.0
        first, last = recent[0], recent[-1]
        elapsed = last[0] - first[0]
        rate = (last[2] - first[2]) / elapsed if elapsed > 0 else 0.0
        return concurrency, max(rate, 0.0)


class DirectSource:
    """Samples `read()` at every `observe` and averages over the tuning's windows."""

    def __init__(
        self, read: Callable[[], Mapping[FunctionKey, Load]], *, tuning: Tuning = DEFAULT_TUNING
    ) -> None:
        self._read = read
        self._tuning = tuning
        self._windows: dict[FunctionKey, _Window] = {}

    async def observe(self, *, now: float) -> Mapping[FunctionKey, Observation]:
        tuning = self._tuning
        observations: dict[FunctionKey, Observation] = {}
        for function, load in self._read().items():
            window = self._windows.setdefault(function, _Window())
            window.add(
                now,
                load.in_flight + load.queued,
                load.requests_total,
                keep=tuning.stable_window_seconds,
            )
            stable_concurrency, stable_rps = window.averages(now, tuning.stable_window_seconds)
            panic_concurrency, panic_rps = window.averages(now, tuning.panic_window_seconds)
            observations[function] = Observation(
                stable_concurrency=stable_concurrency,
                panic_concurrency=panic_concurrency,
                stable_rps=stable_rps,
                panic_rps=panic_rps,
                queued=load.queued,
            )
        return observations
