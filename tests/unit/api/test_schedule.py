"""api/schedule.py: EventBridge's rate and cron expressions, their next ticks, what is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubelambda.api.schedule import Schedule, ScheduleError, parse_expression, zone

NOW = datetime(2026, 12, 4, 10, 30, 15, tzinfo=UTC)  # a Friday


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def schedule(expression: str, tz: str = "UTC", **window: datetime) -> Schedule:
    return Schedule(
        expression=parse_expression(expression),
        tz=zone(tz),
        anchor=at("2026-12-01T00:00:00+00:00"),
        **window,
    )


@pytest.mark.parametrize(
    ("expression", "tz", "after", "expected"),
    [
        ("rate(5 minutes)", "UTC", NOW, "2026-12-04T10:35:00+00:00"),
        ("rate(1 hour)", "UTC", NOW, "2026-12-04T11:00:00+00:00"),
        ("rate(2 days)", "UTC", NOW, "2026-12-05T00:00:00+00:00"),
        ("cron(0 12 * * ? *)", "UTC", NOW, "2026-12-04T12:00:00+00:00"),
        ("cron(0/15 * * * ? *)", "UTC", NOW, "2026-12-04T10:45:00+00:00"),
        ("cron(0 8 ? * MON-FRI *)", "UTC", NOW, "2026-12-07T08:00:00+00:00"),
        ("cron(0 9 ? * 2 *)", "UTC", NOW, "2026-12-07T09:00:00+00:00"),  # 2 = Monday
        ("cron(0 0 L * ? *)", "UTC", NOW, "2026-12-31T00:00:00+00:00"),
        ("cron(0 0 1W * ? *)", "UTC", NOW, "2027-01-01T00:00:00+00:00"),  # a Friday
        ("cron(0 0 ? * 6L *)", "UTC", NOW, "2026-12-25T00:00:00+00:00"),  # last Friday
        ("cron(0 10 ? * 2#1 *)", "UTC", NOW, "2026-12-07T10:00:00+00:00"),  # first Monday
        ("cron(0 0 29 FEB ? *)", "UTC", NOW, "2028-02-29T00:00:00+00:00"),
        ("cron(0 12 * * ? 2027)", "UTC", NOW, "2027-01-01T12:00:00+00:00"),
        ("cron(0 12 * * ? *)", "Europe/Berlin", NOW, "2026-12-04T11:00:00+00:00"),
        # 02:30 does not exist in Berlin on 29 March 2026: that day is skipped
        (
            "cron(30 2 * * ? *)",
            "Europe/Berlin",
            at("2026-03-28T12:00:00+00:00"),
            "2026-03-30T00:30:00+00:00",
        ),
    ],
)
def test_next_tick(expression: str, tz: str, after: datetime, expected: str) -> None:
    assert schedule(expression, tz).next_after(after) == at(expected)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("rate(0 minutes)", "positive"),
        ("rate(1 minutes)", "rate(1 minute)"),
        ("rate(5 minute)", "rate(5 minutes)"),
        ("rate(5 weeks)", "neither rate"),
        ("cron(0 12 * * *)", "6 fields"),
        ("cron(0 12 * * * *)", "exactly one of day-of-month and day-of-week"),
        ("cron(0 12 ? * ? *)", "exactly one of day-of-month and day-of-week"),
        ("cron(60 12 * * ? *)", "minutes"),
        ("cron(0 24 * * ? *)", "hours"),
        ("cron(0 0 32 * ? *)", "day-of-month"),
        ("cron(0 0 ? * 8 *)", "day-of-week"),
        ("cron(0 0 ? * 2#6 *)", "week must be 1-5"),
        ("cron(0 0 * XYZ ? *)", "month"),
        ("cron(0/0 * * * ? *)", "step"),
        ("every day", "neither rate"),
    ],
)
def test_what_eventbridge_refuses_is_refused_naming_the_part(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        parse_expression(expression)


def test_unknown_zones_are_named() -> None:
    with pytest.raises(ScheduleError, match="Mars/Olympus"):
        zone("Mars/Olympus")


def test_the_window_bounds_the_ticks_and_a_scheduler_away_owes_only_the_latest() -> None:
    windowed = schedule(
        "rate(1 hour)", start=at("2026-12-10T00:00:00+00:00"), end=at("2026-12-10T03:00:00+00:00")
    )
    assert windowed.next_after(NOW) == at("2026-12-10T00:00:00+00:00")  # ticks in [start, end]
    assert windowed.next_after(at("2026-12-10T03:00:00+00:00")) is None
    every = schedule("cron(0/10 * * * ? *)")
    owed = every.latest_until(
        at("2026-12-04T11:05:00+00:00"), after=at("2026-12-04T10:00:00+00:00")
    )
    assert owed == at("2026-12-04T11:00:00+00:00")
    assert (
        every.latest_until(at("2026-12-04T10:05:00+00:00"), after=at("2026-12-04T10:00:00+00:00"))
        is None
    )
    hourly = schedule("rate(1 hour)")
    assert hourly.latest_until(NOW, after=at("2026-12-02T00:00:00+00:00")) == at(
        "2026-12-04T10:00:00+00:00"
    )
