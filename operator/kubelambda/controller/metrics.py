"""The operator's own Prometheus metrics: reconciles by kind and outcome and how long they take,
Functions and Triggers by their Ready condition, objects waiting for a retry, and the
autoscaler's ticks and scaling decisions.

The Operator records reconciles and states, the autoscaler's loop its ticks and scalings (as
its ``ScalingObserver``); ``kubelambda operator --metrics-port`` serves the registry on /metrics.
Everything is on a registry of its own, so several operators in one test process never share.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any, Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest, start_http_server

from kubelambda.api.identity import FunctionKey

__all__ = [
    "CONTENT_TYPE",
    "OperatorMetrics",
    "Outcome",
    "ready_of",
    "scaling_direction",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

Outcome = Literal["ok", "invalid", "error"]
"""ok: reconciled (whatever the status says); invalid: the spec was refused (InvalidSpec);
error: the reconcile raised and the key waits for a retry with backoff."""

# Applies are a few API round trips; a reconcile behind a slow S3 server or a busy API server
# can take up to the client's 30 s timeout.
RECONCILE_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TICK_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_KINDS: Final = {"Function": "function", "Trigger": "trigger"}


def ready_of(body: Mapping[str, Any] | None) -> str:
    """The status of an object's Ready condition, lower case (true, false, unknown); unknown
    when it has none yet."""
    conditions = ((body or {}).get("status") or {}).get("conditions") or ()
    for condition in conditions:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            status = str(condition.get("status")).lower()
            return status if status in ("true", "false") else "unknown"
    return "unknown"


def scaling_direction(current: int, desired: int) -> str | None:
    """up, down, or to_zero (a scale down to no instance); None when nothing changes."""
    if desired == current:
        return None
    if desired > current:
        return "up"
    return "to_zero" if desired == 0 else "down"


class OperatorMetrics:
    """The metric families, and the per-object state behind the state gauges. Call it on the
    operator's event loop; the /metrics server only reads (prometheus_client locks)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.reconciles = Counter(
            "kubelambda_operator_reconciles",
            "Reconciles of Functions and Triggers by outcome: ok, invalid (spec refused),"
            " error (raised; retried with backoff)",
            ("kind", "namespace", "outcome"),
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "kubelambda_operator_reconcile_duration_seconds",
            "Time one reconcile of a Function or Trigger took, failed ones included",
            ("kind",),
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.objects = Gauge(
            "kubelambda_operator_objects",
            "Functions and Triggers the operator reconciled, by their Ready condition"
            " (true, false, unknown)",
            ("kind", "namespace", "ready"),
            registry=self.registry,
        )
        self.retrying = Gauge(
            "kubelambda_operator_retrying_objects",
            "Functions and Triggers whose last reconcile failed, waiting for a retry",
            ("kind",),
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "kubelambda_autoscaler_tick_duration_seconds",
            "Time one autoscaler tick (observe every function, decide, scale) took",
            buckets=TICK_BUCKETS,
            registry=self.registry,
        )
        self.scalings = Counter(
            "kubelambda_autoscaler_scalings",
            "Replica changes the autoscaler made, by direction: up, down, to_zero",
            ("namespace", "direction"),
            registry=self.registry,
        )
        for kind in _KINDS.values():
            self.retrying.labels(kind).set(0)  # a series from the start: rate() needs a base
        self._ready: dict[tuple[str, str, str], str] = {}
        self._counts: Tally[tuple[str, str, str]] = Tally()

    # --- the controller ----------------------------------------------------------------------

    def reconciled(self, *, kind: str, namespace: str, outcome: Outcome, seconds: float) -> None:
        label = _KINDS.get(kind, kind.lower())
        self.reconciles.labels(label, namespace, outcome).inc()
        self.reconcile_seconds.labels(label).observe(seconds)

    def state(
        self, *, kind: str, namespace: str, name: str, body: Mapping[str, Any] | None
    ) -> None:
        """Record the object's Ready condition as stored after its reconcile (None: gone)."""
        label = _KINDS.get(kind, kind.lower())
        key = (label, namespace, name)
        old = self._ready.pop(key, None)
        new = None if body is None else ready_of(body)
        if old == new:
            if new is not None:
                self._ready[key] = new
            return
        if old is not None:
            self._move((label, namespace, old), -1)
        if new is not None:
            self._ready[key] = new
            self._move((label, namespace, new), +1)

    def _move(self, labels: tuple[str, str, str], by: int) -> None:
        self._counts[labels] += by
        if self._counts[labels] > 0:
            self.objects.labels(*labels).set(self._counts[labels])
        else:
            # A namespace emptied leaves no series behind.
            del self._counts[labels]
            self.objects.remove(*labels)

    def backing_off(self, counts: Mapping[str, int]) -> None:
        """How many objects of each kind ("Function", "Trigger") wait for a retry."""
        for kind, label in _KINDS.items():
            self.retrying.labels(label).set(counts.get(kind, 0))

    # --- the autoscaler (autoscaler.loop.ScalingObserver) --------------------------------------

    def ticked(self, seconds: float) -> None:
        self.tick_seconds.observe(seconds)

    def scaled(self, function: FunctionKey, *, current: int, desired: int) -> None:
        direction = scaling_direction(current, desired)
        if direction is not None:
            self.scalings.labels(function.namespace, direction).inc()

    # --- exposition --------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, as /metrics serves it."""
        return generate_latest(self.registry)

    def serve(self, port: int, *, host: str = "0.0.0.0") -> None:
        """Serve /metrics on ``host:port`` from a daemon thread, for the process's lifetime."""
        start_http_server(port, addr=host, registry=self.registry)
