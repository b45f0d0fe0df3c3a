"""Time inside SpiffWorkflow, and the escalation rules its timer expressions read.

SpiffWorkflow's timer events compare against `datetime.now()`. duban runs every engine call at
an explicit instant (`now`, from an injectable clock), so that instant is what the timers see:
the module's `datetime` is replaced by one whose `now()` answers from a context variable that
the runtime sets around each piece of SpiffWorkflow work. Outside those calls it is the real
clock. Tests move the clock; nothing sleeps.

Every human step with a due date carries four timer boundary events (processes/*.bpmn): a
reminder before the due date, the overdue escalation at it, repeated reminders (催办) while it
stays overdue, and after a grace period the escalation to the unit's head and the office
director. Their times come from `escalation_at(due, kind)` and `urge_cycle(due)`, which read
the rules (lead time, cadence, grace) in force for the instance being run: settings per
jurisdiction and per process, not code."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer
from sqlalchemy import bindparam, select

from .clock import end_of_local_day
from .direct import Direct, execute
from .models import JurisdictionSetting

_NOW: contextvars.ContextVar[datetime | None] = contextvars.ContextVar("duban_now", default=None)


@dataclass(frozen=True)
class Rules:
    reminder_days: int = 3  # remind this many days before the due date
    urge_every_days: int = 2  # 催办 at this cadence while overdue
    grace_days: int = 5  # then escalate to the unit head and the office director

    @classmethod
    def from_settings(cls, values: dict[str, str]) -> Rules:
        base = cls()
        return cls(
            **{
                name: int(values.get(name, getattr(base, name)))
                for name in ("reminder_days", "urge_every_days", "grace_days")
            }
        )


# The rules, or how to read them: most steps evaluate no timer, so they are read only when one does.
_RULES: contextvars.ContextVar[Rules | Callable[[], Rules] | None] = contextvars.ContextVar(
    "duban_rules", default=None
)


def _rules() -> Rules:
    rules = _RULES.get()
    if rules is None:
        return Rules()
    if callable(rules):
        rules = rules()
        _RULES.set(rules)
    return rules


class _SpiffDatetime(datetime):
    """`datetime` for SpiffWorkflow's timer module: now() is the instant duban runs at."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        at = _NOW.get()
        if at is None:
            return datetime.now(tz)
        return at.astimezone(tz) if tz is not None else at


spiff_timer.datetime = _SpiffDatetime  # type: ignore[misc]


@contextmanager
def running_at(now: datetime, rules: Rules | Callable[[], Rules] | None = None) -> Iterator[None]:
    """Run SpiffWorkflow work as of `now` (timers included), under `rules` (or the rules a
    callable reads when a timer first needs them)."""
    token = _NOW.set(now.astimezone(UTC))
    rules_token = _RULES.set(rules or Rules())
    try:
        yield
    finally:
        _NOW.reset(token)
        _RULES.reset(rules_token)


def _due(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return end_of_local_day(date.fromisoformat(str(value)))


def escalation_at(due: Any, kind: str) -> str:
    """When a step's timer of `kind` fires, as ISO 8601 (a timeDate expression's value)."""
    rules, at = _rules(), _due(due)
    if kind == "reminder":
        at -= timedelta(days=rules.reminder_days)
    elif kind == "escalate":
        at += timedelta(days=rules.grace_days)
    elif kind != "overdue":
        raise ValueError(f"unknown escalation kind '{kind}'")
    return at.isoformat()


def urge_cycle(due: Any) -> str:
    """Repeated reminders while overdue: an ISO 8601 recurring interval (a timeCycle value)
    starting one cadence after the due time."""
    rules = _rules()
    every = timedelta(days=rules.urge_every_days)
    start = _due(due) + every
    return f"R99/{start.isoformat()}/P{rules.urge_every_days}D"


TIMER_FUNCTIONS = {"escalation_at": escalation_at, "urge_cycle": urge_cycle}


# The jurisdiction's escalation settings: built once, sent direct (engine.direct).
_SETTINGS = Direct(
    select(JurisdictionSetting.key, JurisdictionSetting.value).where(
        JurisdictionSetting.jurisdiction_id == bindparam("jurisdiction_id"),
        JurisdictionSetting.key.like("escalation.%"),
    )
)


def rules_for(session: Any, jurisdiction_id: int | None, process_id: str) -> Rules:
    """The jurisdiction's settings `escalation.<rule>`, overridden per process by
    `escalation.<process>.<rule>`; the defaults where neither is set."""
    if jurisdiction_id is None:
        return Rules()
    cache: dict[tuple[int, str], Rules] = session.info.setdefault("duban.rules", {})
    key = (jurisdiction_id, process_id)
    if key not in cache:
        found = execute(session.connection(), _SETTINGS, {"jurisdiction_id": jurisdiction_id})
        rows = found.fetchall()
        values = {k.split(".")[-1]: v for k, v in rows if k.count(".") == 1}
        values |= {
            k.split(".")[-1]: v for k, v in rows if k.startswith(f"escalation.{process_id}.")
        }
        cache[key] = Rules.from_settings(values)
    return cache[key]
