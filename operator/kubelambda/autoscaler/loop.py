"""The autoscaler: each tick, observe every function, decide, and scale; wake-ups act at once.

Local mode runs one over the local platform; on a cluster it runs in the operator over
Deployments. It is the only component that sets a replica count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.decider import (
    DEFAULT_TUNING,
    Decision,
    Observation,
    ScalerState,
    ScalingSpec,
    Tuning,
    decide,
)
from kubelambda.autoscaler.sources import MetricSource, Observations

log = logging.getLogger(__name__)

_IDLE = Observation(
    stable_concurrency=0.0, panic_concurrency=0.0, stable_rps=0.0, panic_rps=0.0, queued=0
)
# How long a gateway's report of its requests for a function counts towards their sum: a gateway
# reports every wake interval (1 s) while it holds requests, so a report not renewed for three
# is one whose requests were served, or a gateway gone.
REPORT_SECONDS = 3.0


class ReplicaTarget(Protocol):
    """What the autoscaler scales: Deployments on a cluster, processes in local mode."""

    def replicas(self, function: FunctionKey) -> int:
        """The count last asked for (not how many are ready)."""
        ...

    async def scale(self, function: FunctionKey, replicas: int, *, reason: str) -> None: ...


class ScalingObserver(Protocol):
    """Told of each tick's duration and each replica change (the operator's metrics)."""

    def ticked(self, seconds: float) -> None: ...

    def scaled(self, function: FunctionKey, *, current: int, desired: int) -> None: ...


class _Unobserved:
    def ticked(self, seconds: float) -> None:
        pass

    def scaled(self, function: FunctionKey, *, current: int, desired: int) -> None:
        pass


class Autoscaler:
    def __init__(
        self,
        *,
        source: MetricSource,
        target: ReplicaTarget,
        specs: Callable[[], Mapping[FunctionKey, ScalingSpec]],
        tuning: Tuning = DEFAULT_TUNING,
        clock: Callable[[], float] = time.monotonic,
        observer: ScalingObserver | None = None,
    ) -> None:
        self._source = source
        self._observer: ScalingObserver = observer if observer is not None else _Unobserved()
        self._target = target
        self._specs = specs
        self._tuning = tuning
        self._clock = clock
        self._states: dict[FunctionKey, ScalerState] = {}
        # Functions last decided idle at zero, out of panic, under this spec: deciding them
        # again on idle gives the same decision, so a tick's work follows the loaded ones.
        self._settled: dict[FunctionKey, ScalingSpec] = {}
        self.decisions: dict[FunctionKey, Decision] = {}
        # What each gateway said it holds or has in flight for a function, and when (wake).
        self._reports: dict[FunctionKey, dict[str, tuple[int, float]]] = {}
        self._lock = asyncio.Lock()

    async def tick(self, *, now: float | None = None) -> None:
        """One round: every function with a spec gets a decision, and a scale call if it changed."""
        started = self._clock()
        now = started if now is None else now
        try:
            await self._tick(now)
        finally:
            self._observer.ticked(max(self._clock() - started, 0.0))

    async def _tick(self, now: float) -> None:
        observed = await self._source.observe(now=now)
        if not isinstance(observed, Observations):
            observed = Observations(functions=observed)
        observations = observed.functions
        async with self._lock:
            self._forget_reports(now)
            for function, spec in self._specs().items():
                current = self._target.replicas(function)
                observation = observations.get(function)
                idle = observation is None and observed.complete
                if idle:
                    # The source lists only loaded functions, from fresh scrapes: idle. The
                    # decider's last-request time keeps it until scaleToZeroAfterSeconds.
                    if current == 0 and self._settled.get(function) == spec:
                        continue
                    observation = _IDLE
                if observation is None and current > 0:
                    # No data (Prometheus scrapes late, a gateway is down) is not "no
                    # traffic": never scale down on it. At zero, deciding on idle keeps
                    # minReplicas true.
                    self.decisions[function] = Decision(
                        desired=current,
                        reason=(
                            "no metrics for this function (none yet, or a gateway not scraped"
                            f" lately); keeping {current}"
                        ),
                        state=self._states.get(function, ScalerState()),
                    )
                    continue
                state = self._states.get(function, ScalerState())
                decision = decide(
                    observation=observation or _IDLE,
                    spec=spec,
                    current=current,
                    state=state,
                    now=now,
                    tuning=self._tuning,
                )
                self._states[function] = decision.state
                if idle and current == 0 and decision.desired == 0 and not state.panicking:
                    self._settled[function] = spec
                else:
                    self._settled.pop(function, None)
                self.decisions[function] = decision
                if decision.desired != current:
                    log.info(
                        "%s/%s: %d -> %d: %s", *function, current, decision.desired, decision.reason
                    )
                    await self._target.scale(function, decision.desired, reason=decision.reason)
                    self._observer.scaled(function, current=current, desired=decision.desired)

    async def wake(self, function: FunctionKey, *, concurrency: int = 0, gateway: str = "") -> None:
        """A gateway holds requests for `function`: scale 0 -> 1 now, without waiting for the
        next tick. With `concurrency`, the requests that gateway holds or has in flight for it
        now: summed with the other gateways' recent reports, a burst (panic_threshold times
        the instances' capacity) scales out now, in panic mode, rather than once Prometheus
        has scraped every gateway's series of it (every 5 s)."""
        now = self._clock()
        async with self._lock:
            self._settled.pop(function, None)
            state = self._states.get(function, ScalerState())
            # The request counts as traffic: the idle clock restarts from it.
            self._states[function] = ScalerState(
                panic_started_at=state.panic_started_at,
                panic_triggered_at=state.panic_triggered_at,
                panic_peak=state.panic_peak,
                last_request_at=now,
            )
            if self._target.replicas(function) == 0:
                await self._target.scale(function, 1, reason="woken by a request")
                self._observer.scaled(function, current=0, desired=1)
            if concurrency > 0:
                await self._scale_out(function, self._reported(function, gateway, concurrency, now))

    def _reported(self, function: FunctionKey, gateway: str, concurrency: int, now: float) -> int:
        """The sum of the gateways' recent reports for `function`, this one's included."""
        self._reports.setdefault(function, {})[gateway] = (concurrency, now)
        self._forget_reports(now)
        return sum(count for count, _ in self._reports[function].values())

    def _forget_reports(self, now: float) -> None:
        """Drop the reports no gateway renewed (of Functions that stopped bursting, deleted,
        or of gateways gone): what is kept is bounded by the bursting Functions."""
        for function in list(self._reports):
            reports = self._reports[function]
            for name in [n for n, (_, at) in reports.items() if now - at > REPORT_SECONDS]:
                del reports[name]
            if not reports:
                del self._reports[function]

    async def _scale_out(self, function: FunctionKey, concurrency: int) -> None:
        """Decide on `concurrency` reported now as on a panic window's: scale up only."""
        spec = self._specs().get(function)
        if spec is None:
            return
        current = self._target.replicas(function)
        observation = Observation(
            stable_concurrency=0.0,
            panic_concurrency=float(concurrency),
            stable_rps=0.0,
            panic_rps=0.0,
            queued=0,
        )
        decision = decide(
            observation=observation,
            spec=spec,
            current=current,
            state=self._states[function],
            now=self._clock(),
            tuning=self._tuning,
        )
        desired = decision.desired
        if desired <= current:
            return  # no burst: the tick decides on Prometheus's averages
        reporting = len(self._reports.get(function, ()))
        capacity = max(current, 1) * spec.target_concurrency
        capped = f" (maxReplicas {desired})" if desired == spec.max_replicas else ""
        reason = (
            f"panic mode: {concurrency} requests held or in flight at the gateways now"
            f" ({reporting} reporting) against capacity {capacity:g}; desired {desired}{capped}"
        )
        decision = Decision(desired=desired, reason=reason, state=decision.state)
        self._states[function] = decision.state
        self.decisions[function] = decision
        log.info("%s/%s: %d -> %d: %s", *function, current, decision.desired, decision.reason)
        await self._target.scale(function, decision.desired, reason=decision.reason)
        self._observer.scaled(function, current=current, desired=decision.desired)

    async def run(self, *, interval: float = 1.0) -> None:
        """Tick every `interval` seconds until cancelled; a failing tick is logged, not fatal."""
        while True:
            started = self._clock()
            try:
                await self.tick(now=started)
            except Exception:
                log.exception("autoscaler tick failed; trying again next tick")
            await asyncio.sleep(max(interval - (self._clock() - started), 0.0))
