"""Time comes from here so tests can move it instead of sleeping."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class FixedClock:
    """A clock for tests: returns a set instant until moved."""

    def __init__(self, at: datetime) -> None:
        self.at = at.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


# Exactly what every date field asks for: date.fromisoformat alone also takes '20261201' and
# week dates such as '2026-W49-1', which nobody means to type.
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(text: str) -> date:
    """A calendar day typed as YYYY-MM-DD (spaces around it allowed); ValueError otherwise."""
    value = text.strip()
    if not ISO_DAY.fullmatch(value):
        raise ValueError(f"{text!r} is not a date as YYYY-MM-DD")
    return date.fromisoformat(value)  # still refuses 2026-02-30


def local_today(now: datetime) -> date:
    return now.astimezone(LOCAL_TZ).date()


def end_of_local_day(day: date) -> datetime:
    """A due date means 'by the end of that day' in the office's time zone, stored as UTC."""
    return datetime.combine(day, time(23, 59, 59), LOCAL_TZ).astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything duban stores is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
