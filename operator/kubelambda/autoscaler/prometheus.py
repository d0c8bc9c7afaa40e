"""Observations from Prometheus: the gateway's metrics averaged over the scaling windows by PromQL.

On a cluster the autoscaler reads the load of every function with one query per tick (not
one per function); local mode can use it too (`--prometheus`). It answers the same `observe`
as `DirectSource`. The answer lists only functions with some load, so its size follows the
busy functions, not all of them; the others are idle when every scrape behind it is fresh.
The slow parts (the stable window, which targets export) are asked one a tick in turn.
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kubelambda.api.identity import FunctionKey
from kubelambda.autoscaler.decider import DEFAULT_TUNING, Observation, Tuning
from kubelambda.autoscaler.sources import Observations

IN_FLIGHT = "kubelambda_gateway_in_flight_requests"
QUEUED = "kubelambda_gateway_queued_requests"
REQUESTS = "kubelambda_gateway_requests_total"
# Asynchronous events kept in the broker for a function (every dispatcher reports it whole).
BACKLOG = "kubelambda_async_backlog"
# A target scraped longer ago than this is not fresh: three of the chart's 5 s scrapes.
FRESH_SECONDS = 15.0

Fetch = Callable[[str], bytes]
"""GET a URL and return the body; raises OSError when Prometheus cannot be reached."""


class PrometheusError(RuntimeError):
    """Prometheus answered, but not with a usable vector; the message says what it said."""


def _duration(seconds: float) -> str:
    return f"{max(int(seconds * 1000), 1)}ms"


def parts(
    tuning: Tuning = DEFAULT_TUNING, *, fresh_seconds: float = FRESH_SECONDS
) -> list[tuple[str, str]]:
    """The parts of a tick's query, (name, PromQL), each answered under its own `q` label."""
    by = "sum by (namespace, function)"
    # `> 0` before the sum: an idle series costs Prometheus its evaluation but neither a
    # place in the answer nor the sum's work; a sum of the positive terms is the same sum.
    found: list[tuple[str, str]] = []
    for window, seconds in (
        ("stable", tuning.stable_window_seconds),
        ("panic", tuning.panic_window_seconds),
    ):
        span = _duration(seconds)
        found.append((f"{window}_in_flight", f"{by} (avg_over_time({IN_FLIGHT}[{span}]) > 0)"))
        found.append((f"{window}_queued", f"{by} (avg_over_time({QUEUED}[{span}]) > 0)"))
        found.append((f"{window}_rps", f"{by} (rate({REQUESTS}[{span}]) > 0)"))
    found.append(("queued_now", f"{by} ({QUEUED} > 0)"))
    found.append(("backlog", f"max by (namespace, function) ({BACKLOG} > 0)"))
    # What makes absence mean idle: the targets exporting these metrics now, and every
    # target down or not scraped lately (a job's series may then be missing, not zero).
    found.append(("gateway", f"group by (job, instance) ({IN_FLIGHT})"))
    found.append(("dispatcher", f"group by (job, instance) ({BACKLOG})"))
    found.append(("unhealthy", f"up == 0 or time() - timestamp(up) > {fresh_seconds:g}"))
    return found


# Parts that move slowly, asked one group a tick in turn, their last answer reused between:
# a 60 s average at most three ticks old, and the jobs that scrape gateways and dispatchers.
# Prometheus evaluates every part over every function's series, so each one left out of a
# tick is that much less of its time (five passes over the series a tick instead of eight).
ROTATING: tuple[tuple[str, ...], ...] = (
    ("stable_in_flight",),
    ("stable_queued",),
    ("stable_rps",),
    ("gateway", "dispatcher"),
)
_ROTATING = frozenset(name for group in ROTATING for name in group)
# A kept answer older than this (ticks failed or ran long meanwhile) is asked again before
# it is used: at worst a tick asks every part, as on the first tick.
KEPT_SECONDS = 10.0
_TARGET_PARTS = ("gateway", "dispatcher", "unhealthy")


def query(
    tuning: Tuning = DEFAULT_TUNING,
    *,
    fresh_seconds: float = FRESH_SECONDS,
    only: Collection[str] | None = None,
) -> str:
    """One tick's PromQL query: the loaded functions over both windows, summed over the
    gateway's replicas, and the scrape targets that say whether the rest are idle; `only`
    names the parts to ask (all of them by default)."""
    return " or ".join(
        f'label_replace({expression}, "q", "{name}", "", "")'
        for name, expression in parts(tuning, fresh_seconds=fresh_seconds)
        if only is None or name in only
    )


def _complete(
    gateways: set[tuple[str, str]],
    dispatchers: set[tuple[str, str]],
    unhealthy: set[tuple[str, str]],
) -> bool:
    """Whether a function missing from the answer is idle: some gateway was scraped, and no
    target of a job that exports these metrics is down or late. A down target's series go
    stale at once, and its job is the only thing left that says it was a gateway; a job that
    also scrapes other pods makes this stricter than needed, never looser."""
    jobs = {job for job, _ in gateways | dispatchers}
    return bool(gateways) and not any(job in jobs for job, _ in unhealthy)


Series = Mapping[str, Any]


def _vector(body: bytes) -> list[Series]:
    """The series of an answer to `query()`, or PrometheusError naming what it said."""
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise PrometheusError(f"Prometheus answered something that is not JSON: {exc}") from exc
    if answer.get("status") != "success":
        raise PrometheusError(f"Prometheus refused the query: {answer.get('error', answer)}")
    data = answer.get("data", {})
    if data.get("resultType") != "vector":
        raise PrometheusError(f"expected a vector from Prometheus, got {data.get('resultType')}")
    result: list[Series] = data.get("result", [])
    return result


def parse(body: bytes) -> Observations:
    """Observations from the answer to `query()`: the functions listed, each missing part
    read as 0, and whether the functions not listed are idle (`Observations.complete`)."""
    return interpret(_vector(body))


def interpret(result: Iterable[Series]) -> Observations:
    """Observations from the series of `query()`'s parts (see `parse`)."""
    values: dict[FunctionKey, dict[str, float]] = {}
    targets: dict[str, set[tuple[str, str]]] = {name: set() for name in _TARGET_PARTS}
    for series in result:
        labels = series.get("metric", {})
        part = labels.get("q")
        if part in targets:
            targets[part].add((str(labels.get("job", "")), str(labels.get("instance", ""))))
            continue
        namespace, function = labels.get("namespace"), labels.get("function")
        if not namespace or not function or not part:
            continue
        value = float(series["value"][1])
        # An empty window divides 0 by 0; read it as no load rather than poison the decision.
        key = FunctionKey(namespace, function)
        values.setdefault(key, {})[part] = value if math.isfinite(value) else 0.0
    functions = {
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
    complete = _complete(targets["gateway"], targets["dispatcher"], targets["unhealthy"])
    return Observations(functions=functions, complete=complete)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        body: bytes = answer.read()
        return body


class PrometheusSource:
    """Asks Prometheus at `url` (e.g. http://prometheus:9090) once per `observe`: every part
    but the `ROTATING` ones, and one group of those in turn, with any whose kept answer is
    missing (the first tick) or older than `KEPT_SECONDS` (after failed ticks)."""

    def __init__(
        self,
        url: str,
        *,
        tuning: Tuning = DEFAULT_TUNING,
        fetch: Fetch = _get,
        fresh_seconds: float = FRESH_SECONDS,
    ) -> None:
        self._url = url.rstrip("/") + "/api/v1/query?"
        self._tuning = tuning
        self._fresh_seconds = fresh_seconds
        self._fetch = fetch
        self._kept: dict[str, tuple[float, list[Series]]] = {}
        self._turn = 0

    def asking(self, *, now: float) -> set[str]:
        """The parts an `observe` at `now` asks for."""
        names = {name for name, _ in parts(self._tuning, fresh_seconds=self._fresh_seconds)}
        young = {name for name, (at, _) in self._kept.items() if now - at <= KEPT_SECONDS}
        return (names - _ROTATING) | set(ROTATING[self._turn]) | (_ROTATING - young)

    async def observe(self, *, now: float) -> Observations:
        asked = self.asking(now=now)
        promql = query(self._tuning, fresh_seconds=self._fresh_seconds, only=asked)
        endpoint = self._url + urllib.parse.urlencode({"query": promql})
        result = _vector(await asyncio.to_thread(self._fetch, endpoint))
        for name in asked & _ROTATING:
            self._kept[name] = (now, [s for s in result if s.get("metric", {}).get("q") == name])
        self._turn = (self._turn + 1) % len(ROTATING)
        fresh = [s for s in result if s.get("metric", {}).get("q") not in _ROTATING]
        return interpret(fresh + [s for _, kept in self._kept.values() for s in kept])
