"""What the console shows, as plain data: each Function's state and last hour's figures, the
charts' series, an invocation's log lines; and the pure arithmetic that makes them.

The sources (`local.py`, `cluster.py`) fill these; `page.py` draws them. Nothing here reads a
clock, a file or the network.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from kubelambda.api.identity import FunctionKey

__all__ = [
    "WINDOW_SECONDS",
    "Chart",
    "Figures",
    "FunctionState",
    "Invocation",
    "Logs",
    "Overview",
    "Series",
    "invocations_of",
    "path_to_zero",
    "quantile",
]

WINDOW_SECONDS: Final = 3600.0  # what "the last hour" of figures and charts means


@dataclass(frozen=True)
class Figures:
    """One function's numbers over the window (counts) and now (gauges); None: not known."""

    invocations: float = 0.0  # answers an instance gave (Lambda's Invocations)
    gb_seconds: float = 0.0  # billed duration x memory, as Lambda bills (usage)
    errors: float = 0.0  # answers with a 5xx status
    # Handler errors, timeouts and crashes as the runtime counts them (Lambda's Errors, which
    # Invoke API and asynchronous calls answer with 200); None where the runtimes are not read.
    function_errors: float | None = None
    p50_seconds: float | None = None  # request duration at the gateway, holds included
    p99_seconds: float | None = None
    cold_starts: float = 0.0
    cold_start_seconds: float | None = None  # their mean wait
    in_flight: float = 0.0
    held: float = 0.0  # synchronous requests waiting for an instance now
    backlog: float | None = None  # asynchronous events waiting in the broker
    oldest_event_age_seconds: float | None = None  # how long the first of them has waited


@dataclass(frozen=True)
class FunctionState:
    """A Function's replicas and scaling, as its platform reports them."""

    key: FunctionKey
    desired: int
    ready: int
    min_replicas: int
    max_replicas: int
    scale_to_zero_after_seconds: float
    idle_seconds: float | None = None  # since its last request, when the source knows
    ready_condition: str = ""  # a cluster's Ready condition: "True", "False: reason", ...
    next_ticks: tuple[tuple[str, datetime], ...] = ()  # (schedule Trigger, its next tick)


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[float, float], ...]  # (epoch seconds, value)


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    series: tuple[Series, ...]


@dataclass(frozen=True)
class Overview:
    """Everything the index page shows; `problems` are what a source could not read."""

    now: float
    source: str  # "local mode" or "cluster"
    states: Sequence[FunctionState]
    figures: dict[FunctionKey, Figures]
    charts: dict[FunctionKey, tuple[Chart, ...]]
    queued_async: float | None = None  # the store's whole backlog, where not per function
    problems: tuple[str, ...] = ()


@dataclass
class Invocation:
    request_id: str
    lines: list[str] = field(default_factory=list)
    report: str = ""  # the REPORT line, if written yet
    where: str = ""  # the pod that wrote it, on a cluster


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over cumulative (upper bound, count) buckets ending with
    +Inf: linear within the bucket; the highest finite bound when it falls in +Inf. None when
    nothing was observed."""
    if not buckets or not 0 <= q <= 1:
        return None
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def path_to_zero(state: FunctionState, figures: Figures) -> str:
    """Where the function stands on its way to zero instances, in words."""
    if state.min_replicas > 0:
        return f"kept at {state.min_replicas} or more (minReplicas)"
    if state.desired == 0 and state.ready == 0:
        return "at zero: the next request starts an instance"
    if figures.in_flight > 0 or figures.held > 0:
        return "busy: scales to zero once idle"
    after = state.scale_to_zero_after_seconds
    if state.idle_seconds is None:
        return f"to zero after {after:g}s without requests"
    left = after - state.idle_seconds
    if left <= 0:
        return "idle: scaling to zero"
    return f"idle {state.idle_seconds:.0f}s: to zero in {math.ceil(left)}s"


_START: Final = re.compile(r"^START RequestId: (\S+)")
_END_OR_REPORT: Final = re.compile(r"^(END|REPORT) RequestId: (\S+)")


def invocations_of(lines: Sequence[str], *, last: int) -> list[Invocation]:
    """The `last` invocations in a function's log lines (newest first): each one's lines from
    its START to its REPORT. Lines outside any invocation (init, an instance's own) are left
    out; with concurrency > 1 a handler's line goes to the latest started invocation."""
    open_ones: dict[str, Invocation] = {}
    found: list[Invocation] = []
    latest: Invocation | None = None
    for line in lines:
        started = _START.match(line)
        if started:
            latest = Invocation(request_id=started[1], lines=[line])
            open_ones[latest.request_id] = latest
            found.append(latest)
            continue
        ended = _END_OR_REPORT.match(line)
        if ended:
            invocation = open_ones.get(ended[2])
            if invocation is None:
                continue  # its START is older than the lines read
            invocation.lines.append(line)
            if ended[1] == "REPORT":
                invocation.report = line
                del open_ones[invocation.request_id]
                if latest is invocation:
                    latest = None
            continue
        if latest is not None:
            latest.lines.append(line)
    return list(reversed(found[-last:])) if last > 0 else []


@dataclass(frozen=True)
class Logs:
    """A function's latest invocations, or why there are none to show (`note`)."""

    invocations: list[Invocation]
    note: str = ""
