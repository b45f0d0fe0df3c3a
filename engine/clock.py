"""Time comes from here so tests can move it instead of sleeping."""

from __future__ import annotations

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


def local_today(now: datetime) -> date:
    return now.astimezone(LOCAL_TZ).date()


def end_of_local_day(day: date) -> datetime:
    """A due date means 'by the end of that day' in the office's time zone, stored as UTC."""
    return datetime.combine(day, time(23, 59, 59), LOCAL_TZ).astimezone(UTC)


def as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything duban stores is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
