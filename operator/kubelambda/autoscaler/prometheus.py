"""Observations from Prometheus: the gateway's metrics averaged over the scaling windows by PromQL.

On a cluster the autoscaler reads every function's load from Prometheus with one
query per tick (not one per function); local mode can use it too (`--prometheus`).
It answers the same `observe` as `DirectSource`.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.decider import DEFAULT_TUNING, Observation, Tuning

IN_FLIGHT = "kubelambda_gateway_in_flight_requests"
QUEUED = "kubelambda_gateway_queued_requests"
REQUESTS = "kubelambda_gateway_requests_total"
# Asynchronous events kept in the broker for a function (every dispatcher reports it whole).
BACKLOG = "kubelambda_async_backlog"

Fetch = Callable[[str], bytes]
"""GET a URL and return the body; raises OSError when Prometheus cannot be reached."""


class PrometheusError(RuntimeError):
    """Prometheus answered, but not with a usable vector; the message says what it said."""


def _duration(seconds: float) -> str:
    return f"{max(int(seconds * 1000), 1)}ms"


def _tagged(expression: str, name: str) -> str:
    # Each part of the union gets its own `q` label, so one query returns them all.
    return f'label_replace({expression}, "q", "{name}", "", "")'


def query(tuning: Tuning = DEFAULT_TUNING) -> str:
    """The one PromQL query of a tick: every function's load over both windows, summed
    over the gateway's replicas."""
    by = "sum by (namespace, function)"
    parts = []
    for window, seconds in (
        ("stable", tuning.stable_window_seconds),
        ("panic", tuning.panic_window_seconds),
    ):
        span = _duration(seconds)
        parts.append(_tagged(f"{by} (avg_over_time({IN_FLIGHT}[{span}]))", f"{window}_in_flight"))
        parts.append(_tagged(f"{by} (avg_over_time({QUEUED}[{span}]))", f"{window}_queued"))
        parts.append(_tagged(f"{by} (rate({REQUESTS}[{span}]))", f"{window}_rps"))
    parts.append(_tagged(f"{by} ({QUEUED})", "queued_now"))
    parts.append(_tagged(f"max by (namespace, function) ({BACKLOG})", "backlog"))
    return " or ".join(parts)


def parse(body: bytes) -> Mapping[FunctionKey, Observation]:
    """Observations from the answer to `query()`; a function missing a part reads 0 for it."""
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise PrometheusError(f"Prometheus answered something that is not JSON: {exc}") from exc
    if answer.get("status") != "success":
        raise PrometheusError(f"Prometheus refused the query: {answer.get('error', answer)}")
    data = answer.get("data", {})
    if data.get("resultType") != "vector":
        raise PrometheusError(f"expected a vector from Prometheus, got {data.get('resultType')}")
    values: dict[FunctionKey, dict[str, float]] = {}
    for series in data.get("result", []):
        labels = series.get("metric", {})
        namespace, function, part = labels.get("namespace"), labels.get("function"), labels.get("q")
        if not namespace or not function or not part:
            continue
        value = float(series["value"][1])
        # An empty window divides 0 by 0; read it as no load rather than poison the decision.
        key = FunctionKey(namespace, function)
        values.setdefault(key, {})[part] = value if math.isfinite(value) else 0.0
    return {
        key: Observation(
            stable_concurrency=v.get("stable_in_flight", 0.0) + v.get("stable_queued", 0.0),
            panic_concurrency=v.get("panic_in_flight", 0.0) + v.get("panic_queued", 0.0),
            stable_rps=v.get("stable_rps", 0.0),
            panic_rps=v.get("panic_rps", 0.0),
            # A backlog of asynchronous events is demand: it wakes the function and keeps
            # one instance; the dispatchers' invocations, counted by the gateway, do the rest.
            queued=max(round(v.get("queued_now", 0.0)), 1 if v.get("backlog", 0.0) > 0 else 0),
        )
        for key, v in values.items()
    }


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        body: bytes = answer.read()
        return body


class PrometheusSource:
    """Asks Prometheus at `url` (e.g. http://prometheus:9090) once per `observe`."""

    def __init__(self, url: str, *, tuning: Tuning = DEFAULT_TUNING, fetch: Fetch = _get) -> None:
        self._endpoint = (
            url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": query(tuning)})
        )
        self._fetch = fetch

    async def observe(self, *, now: float) -> Mapping[FunctionKey, Observation]:
        body = await asyncio.to_thread(self._fetch, self._endpoint)
        return parse(body)
