"""When the chaos load counts as served normally (window.assess and window.normal), as data:
no cluster needed."""

from __future__ import annotations

import pytest

from e2e.chaos.load import HUNG, OK, RETRY_AFTER, Call
from e2e.chaos.window import LAG, MIN_GOOD, SLOW, STREAK, assess, normal


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
