"""One disruption's window of the chaos load: wait until the load is served normally, apply the
fault, wait until it is served normally again (and the broker's redeliveries are in), then
count what the window's requests came to, which accepted events and uploads and which stored
queue and kafka messages the function handled (and how often), and how long recovery took.

Windows follow each other without gaps, so every request and event of the load belongs to one:
the window in which it was sent (a call), accepted (an event, an upload) or stored (a message),
though it may be handled in the next; loss is judged once the window's items have drained.
"Served normally" is judged by `assess` (a pure function of the load's records and `now`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pytest

from e2e.chaos.load import CLIENT_TIMEOUT, FAILURES, OK, Call, Load
from harness.cluster import Cluster

STREAK = 5.0  # seconds of normal service after which the load counts as recovered
SLOW = 2.0  # a synchronous answer slower than this is not normal service (normal: < 0.3 s)
LAG = 5.0  # an event or upload handled later than this after it was accepted is late
MIN_GOOD = 3  # good answers of each synchronous kind within the streak
KINDS = ("http", "invoke")
BASELINE_TIMEOUT = 90.0
ACK_WAIT = 20.0  # the harness release's dispatcher.ackWaitSeconds (harness/release.py)
# A window lasts at least this long after its fault: a stopped dispatcher leaves its deliveries
# unacknowledged (the function may have run them), and the broker hands them out again after
# the ack wait: duplicates of the window's events arrive until then.
SETTLE = ACK_WAIT + LAG
# After the window: a killed dispatcher's events come back after its ack_wait, MinIO sends
# its queued events again; both are well within this (test_async_events.py's HANDLED_TIMEOUT).
HANDLED_TIMEOUT = 300.0
SOURCES = ("queue", "kafka")  # the prefixes of the producers' message ids
ASYNC = "async"  # Event invocations and uploads, whose ids have none of those prefixes


@dataclass(frozen=True)
class Fault:
    """A disruption: `act(cluster, function)` applies it and returns once the component is back."""

    what: str
    how: str
    act: Callable[[Cluster, str], None]


@dataclass(frozen=True)
class Health:
    """When service was last not normal at or after `since` (None: never), and how many good
    synchronous answers of each kind began after that."""

    last_bad: float | None
    good: Mapping[str, int]


def _good(call: Call) -> bool:
    return call.outcome == OK and call.ended is not None and call.ended - call.began <= SLOW


def assess(
    calls: Sequence[Call],
    accepted: Mapping[str, float],
    handled: Mapping[str, float],
    *,
    since: float,
    streak_from: float,
    now: float,
) -> Health:
    """Bad: a call begun at or after `since` that failed, answered slower than SLOW or is still
    waiting after SLOW; an event or upload accepted at or after `since` and handled more than
    LAG after (or not yet, LAG on). Good answers are counted from the last bad moment, or
    from `streak_from` when nothing went wrong since `since`."""
    moments: list[float] = []
    for call in calls:
        if call.began < since:
            continue
        if call.outcome is None or call.ended is None:
            if now - call.began > SLOW:
                moments.append(now)
        elif not _good(call):
            moments.append(call.ended)
    for ident, at in accepted.items():
        if at < since:
            continue
        got = handled.get(ident)
        if got is None and now - at > LAG:
            moments.append(now)
        elif got is not None and got - at > LAG:
            moments.append(got)
    last_bad = max(moments) if moments else None
    start = streak_from if last_bad is None else last_bad
    good = Counter(call.kind for call in calls if call.began >= start and _good(call))
    return Health(last_bad=last_bad, good=dict(good))


def normal(health: Health, *, streak_from: float, now: float) -> bool:
    """Served normally for STREAK seconds, with enough good answers of each kind in them."""
    start = streak_from if health.last_bad is None else health.last_bad
    return now - start >= STREAK and all(health.good.get(kind, 0) >= MIN_GOOD for kind in KINDS)


@dataclass(frozen=True)
class Tally:
    """What became of a window's accepted items of one kind (events and uploads, or one
    source's messages): handled at least once, never (lost), and reports beyond the first."""

    accepted: int
    handled: int
    lost: list[str]
    duplicates: int


def source_of(ident: str) -> str:
    prefix = ident.split(":", 1)[0]
    return prefix if prefix in SOURCES else ASYNC


def tallies(accepted: Iterable[str], reports: Mapping[str, int]) -> dict[str, Tally]:
    """The window's accepted ids against the function's reports (id -> how many), by kind."""
    groups: dict[str, list[str]] = {}
    for ident in accepted:
        groups.setdefault(source_of(ident), []).append(ident)
    return {
        kind: Tally(
            accepted=len(ids),
            handled=sum(1 for ident in ids if reports.get(ident, 0) > 0),
            lost=sorted(ident for ident in ids if reports.get(ident, 0) == 0),
            duplicates=sum(max(0, reports.get(ident, 0) - 1) for ident in ids),
        )
        for kind, ids in groups.items()
    }


def slowest(accepted: Mapping[str, float], handled: Mapping[str, float]) -> dict[str, float]:
    """By kind, the longest time from accepting (storing) an item to its first handling: which
    source held up the recovery."""
    lags: dict[str, float] = {}
    for ident, at in accepted.items():
        if ident in handled:
            kind = source_of(ident)
            lags[kind] = max(lags.get(kind, 0.0), handled[ident] - at)
    return lags


def first_handled(load: Load) -> dict[str, float]:
    seen: dict[str, float] = {}
    for ident, at in load.recorder.arrivals():
        seen.setdefault(ident, at)
    return seen


@dataclass
class Report:
    what: str
    how: str
    outcomes: Counter[str]
    accepted: int
    handled: int
    lost: list[str]
    duplicates: int
    recovered_in: float | None  # None: not within the bound
    back_in: float  # until the fault's component was back (the fault's own wait)
    not_accepted: int  # events the caller gave up on (never a 202: not lost, refused)
    upload_errors: int
    messages: dict[str, Tally] = field(default_factory=dict)  # by source, those the load has
    not_published: dict[str, int] = field(default_factory=dict)  # by source: producer gave up
    slowest: dict[str, float] = field(default_factory=dict)  # by kind: longest until handled
    examples: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.outcomes[kind] for kind in FAILURES)

    def line(self) -> str:
        o = self.outcomes
        recovered = "never" if self.recovered_in is None else f"{self.recovered_in:.1f} s"
        messages = "".join(
            f"{source} produced {t.accepted} handled {t.handled} lost {len(t.lost)} "
            f"duplicates {t.duplicates} "
            for source, t in self.messages.items()
        )
        not_published = "".join(
            f", {source} not published {count}" for source, count in self.not_published.items()
        )
        lags = ", ".join(f"{kind} {lag:.1f} s" for kind, lag in sorted(self.slowest.items()))
        return (
            f"chaos {self.what}: sync ok {o[OK]} failed {self.failed} "
            f"(5xx+Retry-After {o['5xx+Retry-After']}, deadline {o['deadline']}, "
            f"refused {o['refused']}, other {o['other']}, hung {o['hung']}) "
            f"async accepted {self.accepted} handled {self.handled} lost {len(self.lost)} "
            f"duplicates {self.duplicates} {messages}recovered in {recovered} "
            f"[{self.how}; back in {self.back_in:.1f} s; events not accepted "
            f"{self.not_accepted}, upload errors {self.upload_errors}{not_published}"
            f"{'; slowest handled ' + lags if lags else ''}]"
        )


@dataclass
class Windows:
    """Where the next window begins, and since when service has been normal."""

    load: Load
    since: float = field(default_factory=time.monotonic)
    streak_from: float = field(default_factory=time.monotonic)
    refused_before: int = 0
    upload_errors_before: int = 0
    not_published_before: dict[str, int] = field(default_factory=dict)

    def health(self, *, streak_from: float) -> Health:
        return assess(
            self.load.calls(),
            self.load.async_items(),
            first_handled(self.load),
            since=self.since,
            streak_from=streak_from,
            now=time.monotonic(),
        )

    def measure(self, fault: Fault, running: Cluster, function: str, *, bound: float) -> Report:
        """Apply `fault` once the load is served normally; return the window's report once
        it is served normally again (or `bound` seconds after the fault began, without a
        recovery time), and no sooner than SETTLE after it. The window's events and uploads
        are all handled, or listed lost."""
        deadline = time.monotonic() + BASELINE_TIMEOUT
        while not normal(
            health := self.health(streak_from=self.streak_from),
            streak_from=self.streak_from,
            now=time.monotonic(),
        ):
            if time.monotonic() > deadline:
                pytest.fail(f"the load was not served normally before the fault: {health}")
            time.sleep(0.2)
        began = time.monotonic()
        fault.act(running, function)
        back_in = time.monotonic() - began
        recovered_in: float | None = None
        while time.monotonic() < began + bound + STREAK:
            health = self.health(streak_from=began)
            if normal(health, streak_from=began, now=time.monotonic()):
                recovered_in = max(0.0, (health.last_bad or began) - began)
                break
            time.sleep(0.2)
        # Not a wait for a state: redeliveries (duplicates) come until SETTLE after the fault.
        time.sleep(max(0.0, began + SETTLE - time.monotonic()))
        ended = time.monotonic()
        report = self._close(fault, ended=ended, back_in=back_in, recovered_in=recovered_in)
        self.streak_from = max(health.last_bad or began, began)
        self.since = ended
        return report

    def _close(
        self, fault: Fault, *, ended: float, back_in: float, recovered_in: float | None
    ) -> Report:
        """Wait for the window's calls to end and its events and uploads to be handled; count."""
        in_window = [c for c in self.load.calls() if self.since <= c.began < ended]
        items = {
            ident: at for ident, at in self.load.async_items().items() if self.since <= at < ended
        }
        deadline = time.monotonic() + max(HANDLED_TIMEOUT, CLIENT_TIMEOUT)
        while time.monotonic() < deadline:
            done = all(call.outcome is not None for call in in_window)
            if done and items.keys() <= first_handled(self.load).keys():
                break
            time.sleep(0.5)
        for producer in self.load.producers:
            if producer.error is not None:
                pytest.fail(f"the {producer.source} producer stopped: {producer.error!r}")
        reports = Counter(ident for ident, _ in self.load.recorder.arrivals())
        counted = tallies(items, reports)
        events = counted.pop(ASYNC, Tally(accepted=0, handled=0, lost=[], duplicates=0))
        refused = len(self.load.sender.refused)
        upload_errors = len(self.load.upload_errors)
        # A message still being retried when the window ends is given up on in a later one
        # (sources.PATIENCE): counted there, as events the caller gave up on are.
        not_published = self.load.not_published()
        report = Report(
            what=fault.what,
            how=fault.how,
            outcomes=Counter(call.outcome or "hung" for call in in_window),
            accepted=events.accepted,
            handled=events.handled,
            lost=events.lost,
            duplicates=events.duplicates,
            messages={
                p.source: counted.get(p.source, Tally(accepted=0, handled=0, lost=[], duplicates=0))
                for p in self.load.producers
            },
            not_published={
                source: count - self.not_published_before.get(source, 0)
                for source, count in not_published.items()
            },
            slowest=slowest(items, first_handled(self.load)),
            recovered_in=recovered_in,
            back_in=back_in,
            not_accepted=refused - self.refused_before,
            upload_errors=upload_errors - self.upload_errors_before,
            examples=[
                f"{call.kind} {call.outcome} at +{call.began - self.since:.1f} s: {call.detail}"
                for call in in_window
                if call.outcome != OK
            ][:8],
        )
        self.refused_before, self.upload_errors_before = refused, upload_errors
        self.not_published_before = not_published
        return report
