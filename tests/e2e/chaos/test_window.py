"""When the chaos load counts as served normally (window.assess and window.normal), and how a
window's items are counted by kind (window.tallies, Report.line), as data: no cluster needed."""

from __future__ import annotations

from collections import Counter

import pytest

from e2e.chaos.load import HUNG, OK, RETRY_AFTER, Call
from e2e.chaos.window import (
    LAG,
    MIN_GOOD,
    SLOW,
    STREAK,
    Report,
    Tally,
    assess,
    normal,
    slowest,
    tallies,
)


def good_calls(start: float, end: float) -> list[Call]:
    """An answer of each kind every half second, each in 50 ms."""
    calls = []
    at = start
    while at < end:
        for kind in ("http", "invoke"):
            calls.append(Call(kind=kind, began=at, ended=at + 0.05, outcome=OK))
        at += 0.5
    return calls


NOW = 100.0


@pytest.mark.parametrize(
    ("case", "extra_calls", "accepted", "handled", "last_bad", "is_normal"),
    [
        ("all good", [], {"e1": 90.0}, {"e1": 90.5}, None, True),
        (
            "a 503 with Retry-After 3 s ago",
            [Call(kind="http", began=96.9, ended=97.0, outcome=RETRY_AFTER)],
            {},
            {},
            97.0,
            False,
        ),
        (
            "a slow answer long ago",
            [Call(kind="invoke", began=80.0, ended=80.0 + SLOW + 1, outcome=OK)],
            {},
            {},
            80.0 + SLOW + 1,
            True,
        ),
        (
            "a call still waiting past SLOW",
            [Call(kind="http", began=NOW - SLOW - 1)],
            {},
            {},
            NOW,
            False,
        ),
        ("an event unhandled past LAG", [], {"e1": NOW - LAG - 1}, {}, NOW, False),
        ("an event accepted just now", [], {"e1": NOW - 1}, {}, None, True),
        ("an event handled late", [], {"e1": 80.0}, {"e1": 80.0 + LAG + 2}, 80.0 + LAG + 2, True),
        (
            "a failure before the window",
            [Call(kind="http", began=59.0, ended=99.0, outcome=HUNG)],
            {},
            {},
            None,
            True,
        ),
    ],
)
def test_served_normally(
    case: str,
    extra_calls: list[Call],
    accepted: dict[str, float],
    handled: dict[str, float],
    last_bad: float | None,
    is_normal: bool,
) -> None:
    calls = good_calls(60.0, NOW) + extra_calls
    health = assess(calls, accepted, handled, since=60.0, streak_from=60.0, now=NOW)
    assert health.last_bad == last_bad, case
    assert normal(health, streak_from=60.0, now=NOW) is is_normal, case


def test_too_few_good_answers_since_the_last_bad_one_is_not_normal() -> None:
    calls = [Call(kind="http", began=80.0, ended=80.0, outcome=RETRY_AFTER)]
    calls += [Call(kind="http", began=90.0 + n, ended=90.1 + n, outcome=OK) for n in range(5)]
    calls += [Call(kind="invoke", began=90.0, ended=90.1, outcome=OK)] * (MIN_GOOD - 1)
    health = assess(calls, {}, {}, since=60.0, streak_from=60.0, now=80.0 + STREAK + 20)
    assert not normal(health, streak_from=60.0, now=80.0 + STREAK + 20)


@pytest.mark.parametrize(
    ("case", "accepted", "reports", "expected"),
    [
        (
            "events, uploads and messages counted apart",
            ["3f2a-request-id", "chaos/000001.txt", "queue:000001", "kafka:000001"],
            {"3f2a-request-id": 1, "chaos/000001.txt": 2, "queue:000001": 1, "kafka:000001": 1},
            {
                "async": Tally(accepted=2, handled=2, lost=[], duplicates=1),
                "queue": Tally(accepted=1, handled=1, lost=[], duplicates=0),
                "kafka": Tally(accepted=1, handled=1, lost=[], duplicates=0),
            },
        ),
        (
            "a message redelivered and one never handled",
            ["queue:000001", "queue:000002", "queue:000003"],
            {"queue:000001": 3, "queue:000003": 1},
            {"queue": Tally(accepted=3, handled=2, lost=["queue:000002"], duplicates=2)},
        ),
        (
            # Handled in the window, produced in the one before: counted there, not here.
            "reports of another window's messages are not this one's",
            ["kafka:000010"],
            {"kafka:000009": 1, "kafka:000010": 1},
            {"kafka": Tally(accepted=1, handled=1, lost=[], duplicates=0)},
        ),
    ],
)
def test_tallies_by_kind(
    case: str, accepted: list[str], reports: dict[str, int], expected: dict[str, Tally]
) -> None:
    assert tallies(accepted, reports) == expected, case


def test_the_window_line_prints_each_source() -> None:
    report = Report(
        what="dispatcher",
        how="force-deleted",
        outcomes=Counter({OK: 10}),
        accepted=4,
        handled=4,
        lost=[],
        duplicates=0,
        recovered_in=1.0,
        back_in=2.0,
        not_accepted=0,
        upload_errors=0,
        messages={
            "queue": Tally(accepted=5, handled=4, lost=["queue:000003"], duplicates=2),
            "kafka": Tally(accepted=6, handled=6, lost=[], duplicates=0),
        },
        not_published={"queue": 1, "kafka": 0},
        slowest={"queue": 21.04, "async": 0.6},
    )
    line = report.line()
    assert "queue produced 5 handled 4 lost 1 duplicates 2" in line
    assert "kafka produced 6 handled 6 lost 0 duplicates 0" in line
    assert "queue not published 1, kafka not published 0" in line
    assert "slowest handled async 0.6 s, queue 21.0 s" in line


def test_slowest_is_the_longest_wait_of_each_kind_until_first_handled() -> None:
    accepted = {"queue:000001": 10.0, "queue:000002": 11.0, "kafka:000001": 10.0, "e1": 10.0}
    handled = {"queue:000001": 12.0, "queue:000002": 31.0, "kafka:000001": 10.5, "e1": 10.4}
    assert slowest(accepted, handled) == pytest.approx({"queue": 20.0, "kafka": 0.5, "async": 0.4})
