"""NCRONTAB schedules as the Functions timer trigger reads them: six fields, seconds first.

``{second} {minute} {hour} {day} {month} {day-of-week}``; each field ``*``, a value, a range ``a-b``, a list
``a,b``, a step ``*/n`` or ``a-b/n``; months and days of the week also by their English three-letter names
(``Jan``, ``Mon``), Sunday as 0 (or 7). Five fields are read as Core Tools reads them (seconds 0). When both
day fields are restricted, a time matches either (cron's rule). Times are UTC unless ``WEBSITE_TIME_ZONE``
names an IANA zone (as on Linux plans).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (low, high, names) per field: second, minute, hour, day of month, month, day of week.
_FIELDS = (
    (0, 59, ()),
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, _MONTHS),
    (0, 7, _DAYS),
)
#: How far ahead a next occurrence is looked for (a schedule such as "0 0 0 30 2 *" never matches).
_HORIZON = timedelta(days=366 * 5)


class ScheduleError(ValueError):
    """Not an NCRONTAB expression the timer trigger accepts."""


def _value(text: str, low: int, names: tuple[str, ...]) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + (1 if low == 1 else 0)
    if not text.isdigit():
        raise ScheduleError(f"{text!r} is not a number")
    return int(text)


def _field(text: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else 0 if step_text else 1
        if step < 1:
            raise ScheduleError(f"bad step in {part!r}")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _value(start, low, names), _value(end, low, names)
        else:
            first = _value(span, low, names)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or first > last:
            raise ScheduleError(f"{part!r} is out of range {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    #: Whether each day field was restricted (not ``*``): cron's either-day rule applies when both are.
    any_day: bool
    any_weekday: bool
    zone: tzinfo = UTC

    @classmethod
    def parse(cls, expression: str, zone: tzinfo | None = None) -> Schedule:
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise ScheduleError(f"{expression!r} is not an NCRONTAB expression (six fields, seconds first)")
        sets = [_field(text, *spec) for text, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(day % 7 for day in sets[5])
        seconds, minutes, hours, days, months = sets[:5]
        any_day, any_weekday = parts[3] == "*", parts[5] == "*"
        return cls(seconds, minutes, hours, days, months, weekdays, any_day, any_weekday, zone or time_zone())

    def _day_matches(self, moment: datetime) -> bool:
        day = moment.day in self.days
        weekday = (moment.isoweekday() % 7) in self.weekdays
        if not self.any_day and not self.any_weekday:
            return day or weekday
        return day and weekday

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after *moment* (aware), in UTC."""
        local = moment.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        limit = local + _HORIZON
        while local < limit:
            if local.month not in self.months:
                local = (local.replace(day=1, hour=0, minute=0, second=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(local):
                local = local.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif local.hour not in self.hours:
                local = local.replace(minute=0, second=0) + timedelta(hours=1)
            elif local.minute not in self.minutes:
                local = local.replace(second=0) + timedelta(minutes=1)
            elif local.second not in self.seconds:
                local += timedelta(seconds=1)
            else:
                return local.astimezone(UTC)
        raise ScheduleError("the schedule has no occurrence in the next five years")


def time_zone() -> tzinfo:
    """``WEBSITE_TIME_ZONE`` (an IANA name) or UTC."""
    name = os.environ.get("WEBSITE_TIME_ZONE", "").strip()
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"WEBSITE_TIME_ZONE={name!r} is not an IANA time zone") from exc
