"""EventBridge schedule expressions: ``rate(5 minutes)`` and ``cron(0 12 * * ? *)``, in a
time zone, between an optional start and end.

``parse_expression`` validates an expression as EventBridge does (naming the field at fault);
``Schedule.next_after`` gives the first tick after a moment. The Trigger model validates
schedules with it, the controller shows the next tick, the scheduler fires ticks.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Cron", "Rate", "Schedule", "ScheduleError", "parse_expression", "zone"]

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.+)\)$")
_UNITS: Final = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS: Final = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
# EventBridge numbers days of the week 1 (SUN) to 7 (SAT).
_DAYS: Final = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
# How far ahead a cron expression is searched for its next tick (a 29 February on a Monday
# can be years away; beyond this the schedule is taken to have ended).
_HORIZON_DAYS: Final = 366 * 8


class ScheduleError(ValueError):
    """An expression EventBridge would refuse; the message names the part at fault."""


@dataclass(frozen=True)
class Rate:
    seconds: int

    def next_after(self, moment: datetime, *, anchor: datetime) -> datetime:
        """Ticks fall at anchor + k·rate (k ≥ 1); the first one after `moment`."""
        elapsed = (moment - anchor).total_seconds()
        k = max(1, int(elapsed // self.seconds) + 1)
        return anchor + timedelta(seconds=k * self.seconds)


@dataclass(frozen=True)
class _Days:
    """The day-of-month or day-of-week field, with EventBridge's L, W and # forms."""

    values: frozenset[int] = frozenset()
    any: bool = False
    last: bool = False  # L in day-of-month: the month's last day
    weekday_near: int | None = None  # nW: the weekday nearest day n
    last_weekday: int | None = None  # dL in day-of-week: the month's last such day
    nth: tuple[int, int] | None = None  # d#n: the n-th such day of the month


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: _Days
    months: frozenset[int]
    day_of_week: _Days
    years: frozenset[int] | None  # None: every year

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months or (self.years is not None and day.year not in self.years):
            return False
        dom, dow = self.day_of_month, self.day_of_week
        last_day = calendar.monthrange(day.year, day.month)[1]
        weekday = (day.isoweekday() % 7) + 1  # Sunday 1 … Saturday 7
        if not dom.any:
            if dom.last:
                return day.day == last_day
            if dom.weekday_near is not None:
                return day == _nearest_weekday(day.year, day.month, dom.weekday_near)
            return day.day in dom.values
        if dow.any:
            return True
        if dow.last_weekday is not None:
            return weekday == dow.last_weekday and day.day + 7 > last_day
        if dow.nth is not None:
            wanted, n = dow.nth
            return weekday == wanted and (day.day - 1) // 7 + 1 == n
        return weekday in dow.values

    def next_after(self, moment: datetime, *, tz: ZoneInfo) -> datetime | None:
        """The first tick after `moment` (local times in `tz`; a time that does not exist
        on a day clocks spring forward is skipped)."""
        local = moment.astimezone(tz).replace(second=0, microsecond=0, tzinfo=None)
        local += timedelta(minutes=1)
        day = local.date()
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = datetime(day.year, day.month, day.day, hour, minute)
                        if candidate < local:
                            continue
                        aware = candidate.replace(tzinfo=tz)
                        back = aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None)
                        if back != candidate:
                            continue  # does not exist in this zone (DST gap)
                        return aware.astimezone(UTC)
            day += timedelta(days=1)
        return None


def _nearest_weekday(year: int, month: int, day: int) -> date:
    last = calendar.monthrange(year, month)[1]
    target = date(year, month, min(day, last))
    if target.weekday() == 5:  # Saturday → Friday, or Monday at the month's start
        return target - timedelta(days=1) if target.day > 1 else target + timedelta(days=2)
    if target.weekday() == 6:  # Sunday → Monday, or Friday at the month's end
        return target + timedelta(days=1) if target.day < last else target - timedelta(days=2)
    return target


def _number(text: str, names: dict[str, int], field: str) -> int:
    if text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"{field}: {text!r} is not a number or a name")
    return int(text)


def _values(
    text: str, low: int, high: int, field: str, names: dict[str, int] | None = None
) -> frozenset[int]:
    """`*`, lists, ranges and steps (`0/15`, `1-5`, `MON-FRI`, `*/10`), within [low, high]."""
    names = names or {}
    found: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{field}: the step in {part!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = _number(a, names, field), _number(b, names, field)
        else:
            start = _number(base, names, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ScheduleError(f"{field}: {part!r} is outside {low}-{high}")
        found.update(range(start, end + 1, step))
    return frozenset(found)


def _day_of_month(text: str) -> _Days:
    if text == "?":
        return _Days(any=True)
    if text == "L":
        return _Days(last=True)
    if text.endswith("W") and text[:-1].isdigit():
        day = int(text[:-1])
        if not 1 <= day <= 31:
            raise ScheduleError(f"day-of-month: {text!r} is outside 1-31")
        return _Days(weekday_near=day)
    return _Days(values=_values(text, 1, 31, "day-of-month"))


def _day_of_week(text: str) -> _Days:
    if text == "?":
        return _Days(any=True)
    if text.endswith("L") and len(text) > 1:
        return _Days(last_weekday=_number(text[:-1], _DAYS, "day-of-week"))
    if "#" in text:
        day, _, n = text.partition("#")
        if not n.isdigit() or not 1 <= int(n) <= 5:
            raise ScheduleError(f"day-of-week: in {text!r} the week must be 1-5")
        wanted = _number(day, _DAYS, "day-of-week")
        if not 1 <= wanted <= 7:
            raise ScheduleError(f"day-of-week: {text!r} is outside 1-7")
        return _Days(nth=(wanted, int(n)))
    return _Days(values=_values(text, 1, 7, "day-of-week", _DAYS))


def parse_expression(expression: str) -> Rate | Cron:
    """A schedule expression, or ScheduleError saying what is wrong with it."""
    text = expression.strip()
    if rate := _RATE.match(text):
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1:
            raise ScheduleError("rate: the value must be a positive number")
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleError(
                f"rate: write rate({value} {unit.rstrip('s') + ('' if value == 1 else 's')})"
                " (singular for 1, plural otherwise, as EventBridge requires)"
            )
        return Rate(seconds=value * _UNITS[unit.rstrip("s")])
    cron = _CRON.match(text)
    if cron is None:
        raise ScheduleError(
            f"{expression!r} is neither rate(VALUE UNIT) nor cron(MIN HOUR DOM MONTH DOW YEAR)"
        )
    fields = cron.group(1).split()
    if len(fields) != 6:
        raise ScheduleError(
            "cron takes 6 fields (minutes hours day-of-month month day-of-week year),"
            f" not {len(fields)}"
        )
    minutes, hours, dom, month, dow, year = fields
    if (dom == "?") == (dow == "?"):
        raise ScheduleError("cron: exactly one of day-of-month and day-of-week must be '?'")
    return Cron(
        minutes=_values(minutes, 0, 59, "minutes"),
        hours=_values(hours, 0, 23, "hours"),
        day_of_month=_day_of_month(dom),
        months=_values(month, 1, 12, "month", _MONTHS),
        day_of_week=_day_of_week(dow),
        years=None if year == "*" else _values(year, 1970, 2199, "year"),
    )


def zone(name: str) -> ZoneInfo:
    """An IANA time zone, or ScheduleError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{name!r} is not an IANA time zone (such as Europe/Berlin)") from None


@dataclass(frozen=True)
class Schedule:
    """A parsed expression with its zone and window; `anchor` starts a rate's ticks."""

    expression: Rate | Cron
    tz: ZoneInfo
    anchor: datetime
    start: datetime | None = None
    end: datetime | None = None

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick after `moment` within [start, end], or None when none is left."""
        if self.start is not None and moment < self.start:
            moment = self.start - timedelta(microseconds=1)
        if isinstance(self.expression, Rate):
            tick: datetime | None = self.expression.next_after(moment, anchor=self.anchor)
        else:
            tick = self.expression.next_after(moment, tz=self.tz)
        if tick is None or (self.end is not None and tick > self.end):
            return None
        return tick

    def latest_until(self, moment: datetime, *, after: datetime) -> datetime | None:
        """The last tick in (after, moment], or None: what a scheduler that was away owes."""
        tick = self.next_after(after)
        if tick is None or tick > moment:
            return None
        latest = tick
        # Walk forward; a rate jumps straight to the last period.
        if isinstance(self.expression, Rate):
            periods = int((moment - tick).total_seconds() // self.expression.seconds)
            return tick + timedelta(seconds=periods * self.expression.seconds)
        for _ in range(100_000):
            following = self.next_after(latest)
            if following is None or following > moment:
                return latest
            latest = following
        return latest
