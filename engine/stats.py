"""What the office director watches: counts by list and by unit, from the mirrored steps (never
a workflow), computed in the database so the page stays fast at a hundred thousand items.

A unit's role in a step is its role in the step's item (牵头 / 配合 / 落实, from the list); the
office's own steps (review, extension decisions) count under the office. Overdue: open past its
due time. Due soon: open and due within three days. On time: completed by its due time (a step
with no due time is on time). Days overdue: for each late step, from its due time to its
completion (or to now while it is open), averaged. Sent back: consolidations beyond the first
of an item."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, String, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from .access import DUE_SOON
from .models import (
    HumanTask,
    Instance,
    Plan,
    PlanTask,
    PlanTaskUnit,
    TaskState,
    Unit,
)

ROLES = ("lead", "support", "implement", "office")


@dataclass(frozen=True)
class Filters:
    jurisdiction_ids: tuple[int, ...] = ()  # the office's (required: the scope of the view)
    plan_key: str | None = None
    unit_id: int | None = None
    status: str | None = None  # open | overdue | due_soon | completed
    since: date | None = None  # steps created on or after
    until: date | None = None  # ... and before the day after


@dataclass
class Counts:
    open: int = 0
    due_soon: int = 0
    overdue: int = 0
    completed: int = 0
    on_time: int = 0
    sent_back: int = 0
    late_days: float = 0.0  # summed over late steps
    late: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return self.on_time / self.completed if self.completed else None

    @property
    def green(self) -> int:
        return self.open - self.overdue - self.due_soon

    @property
    def average_days_overdue(self) -> float | None:
        return self.late_days / self.late if self.late else None

    def add(self, other: Counts) -> None:
        for name in ("open", "due_soon", "overdue", "completed", "on_time", "sent_back", "late"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.late_days += other.late_days


@dataclass
class UnitRow:
    unit_id: int
    unit: str
    by_role: dict[str, Counts] = field(default_factory=dict)

    @property
    def total(self) -> Counts:
        total = Counts()
        for counts in self.by_role.values():
            total.add(counts)
        return total


@dataclass
class Dashboard:
    lists: list[tuple[Plan, Counts]]
    units: list[UnitRow]
    completions_by_week: list[tuple[date, int]]
    totals: Counts


def _days(session: Session, later: Any, earlier: Any) -> Any:
    """(later - earlier) in days, in SQL, on either backend."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier) / 86400.0
    return func.julianday(later) - func.julianday(earlier)


def _steps(filters: Filters, *columns: Any, role_is: str | None = None) -> Any:
    """Steps of routed items in scope (the given columns, or the whole row), with their item's
    plan and the unit's role in it. A branch instance carries its item's plan task, so no
    detour through the top-level instance is needed."""
    ptu = aliased(PlanTaskUnit)
    # The enum's stored value as plain text, so 'office' can stand beside lead/support/implement.
    role = func.coalesce(cast(ptu.role, String), literal("office"))
    query: Any = (
        select(*(columns or (HumanTask,)), PlanTask.plan_id.label("plan_id"), role.label("role"))
        .join(Instance, Instance.id == HumanTask.instance_id)
        .join(PlanTask, PlanTask.id == Instance.plan_task_id)
        .outerjoin(ptu, and_(ptu.plan_task_id == PlanTask.id, ptu.unit_id == HumanTask.unit_id))
        .where(
            PlanTask.plan_id.in_(
                select(Plan.id).where(Plan.jurisdiction_id.in_(filters.jurisdiction_ids))
            ),
            HumanTask.state != TaskState.CANCELLED,
            HumanTask.unit_id.is_not(None),
        )
    )
    if filters.plan_key:
        query = query.where(
            PlanTask.plan_id
            == select(Plan.id).where(Plan.key == filters.plan_key).scalar_subquery()
        )
    if filters.unit_id is not None:
        query = query.where(HumanTask.unit_id == filters.unit_id)
    if role_is is not None:
        query = query.where(role == role_is)
    return query


def _status(query: Any, filters: Filters, now: datetime) -> Any:
    soon = now + DUE_SOON
    if filters.status == "open":
        query = query.where(HumanTask.state == TaskState.READY)
    elif filters.status == "overdue":
        query = query.where(HumanTask.state == TaskState.READY, HumanTask.due_at < now)
    elif filters.status == "due_soon":
        query = query.where(
            HumanTask.state == TaskState.READY, HumanTask.due_at >= now, HumanTask.due_at <= soon
        )
    elif filters.status == "completed":
        query = query.where(HumanTask.state == TaskState.COMPLETED)
    return query


def _dated(query: Any, filters: Filters) -> Any:
    from .clock import end_of_local_day

    if filters.since is not None:
        query = query.where(
            HumanTask.created_at > end_of_local_day(filters.since - timedelta(days=1))
        )
    if filters.until is not None:
        query = query.where(HumanTask.created_at <= end_of_local_day(filters.until))
    return query


STEP_COLUMNS = (
    HumanTask.instance_id,
    HumanTask.unit_id,
    HumanTask.state,
    HumanTask.form,
    HumanTask.due_at,
    HumanTask.completed_at,
)


def dashboard(session: Session, filters: Filters, now: datetime) -> Dashboard:
    """One pass over the steps in scope, grouped by list, unit and role; the per-list and
    per-unit figures are sums of those groups."""
    steps = _dated(_status(_steps(filters, *STEP_COLUMNS), filters, now), filters).subquery()
    ready = steps.c.state == TaskState.READY.value
    done = steps.c.state == TaskState.COMPLETED.value
    late_open = and_(ready, steps.c.due_at < now)
    late_done = and_(done, steps.c.due_at.is_not(None), steps.c.completed_at > steps.c.due_at)
    days = case(
        (late_open, _days(session, literal(now), steps.c.due_at)),
        (late_done, _days(session, steps.c.completed_at, steps.c.due_at)),
        else_=0.0,
    )

    def one(flag: Any) -> Any:
        return func.sum(case((flag, 1), else_=0))

    groups = (steps.c.plan_id, steps.c.unit_id, steps.c.role)
    rows = session.execute(
        select(
            *groups,
            one(ready),
            one(and_(ready, steps.c.due_at >= now, steps.c.due_at <= now + DUE_SOON)),
            one(late_open),
            one(done),
            one(and_(done, or_(steps.c.due_at.is_(None), steps.c.completed_at <= steps.c.due_at))),
            one(or_(late_open, late_done)),
            func.sum(days),
        ).group_by(*groups)
    ).all()
    # Sent back: an item's consolidations beyond its first (few rows: one step in thirty).
    consolidations = steps.c.form == "consolidate"
    sent_back = {
        (plan_id, unit_id, role): int(total - items)
        for plan_id, unit_id, role, total, items in session.execute(
            select(*groups, func.count(), func.count(func.distinct(steps.c.instance_id)))
            .where(consolidations)
            .group_by(*groups)
        )
    }
    names = dict(session.execute(select(Unit.id, Unit.name)).all())
    plans = {
        p.id: p
        for p in session.scalars(
            select(Plan).where(Plan.jurisdiction_id.in_(filters.jurisdiction_ids))
        )
    }
    by_unit: dict[int, UnitRow] = {}
    by_plan: dict[int, Counts] = {}
    totals = Counts()
    for plan_id, unit_id, role, *values in rows:
        o, soon, over, comp, on_time, late, late_days = (x or 0 for x in values)
        counts = Counts(
            o,
            soon,
            over,
            comp,
            on_time,
            sent_back.get((plan_id, unit_id, role), 0),
            float(late_days),
            late,
        )
        entry = by_unit.setdefault(unit_id, UnitRow(unit_id, names.get(unit_id, "?")))
        entry.by_role.setdefault(str(role), Counts()).add(counts)
        by_plan.setdefault(plan_id, Counts()).add(counts)
        totals.add(counts)
    lists = sorted(((plans[p], c) for p, c in by_plan.items()), key=lambda pc: pc[0].id)
    return Dashboard(
        lists,
        sorted(by_unit.values(), key=lambda r: -r.total.overdue),
        _weekly(session, steps, done, now),
        totals,
    )


def _weekly(session: Session, steps: Any, done: Any, now: datetime) -> list[tuple[date, int]]:
    """Completions per week over the last twelve, counted by day in the database."""
    if session.get_bind().dialect.name == "postgresql":
        day: Any = cast(steps.c.completed_at, Date)
    else:  # SQLite: CAST(... AS DATE) would give a number; date() gives 'YYYY-MM-DD'
        day = func.date(steps.c.completed_at, type_=String)
    weeks: dict[date, int] = defaultdict(int)
    for value, count in session.execute(
        select(day, func.count())
        .where(done, steps.c.completed_at >= now - timedelta(weeks=12))
        .group_by(day)
    ):
        d = value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
        weeks[d - timedelta(days=d.weekday())] += count
    start = (now - timedelta(weeks=11)).date()
    monday = start - timedelta(days=start.weekday())
    return [
        (monday + timedelta(weeks=i), weeks.get(monday + timedelta(weeks=i), 0)) for i in range(12)
    ]


SORT_KEYS = {
    "overdue": lambda r: -r.total.overdue,
    "open": lambda r: -r.total.open,
    "due_soon": lambda r: -r.total.due_soon,
    "sent_back": lambda r: -r.total.sent_back,
    "on_time": lambda r: r.total.on_time_rate if r.total.on_time_rate is not None else 2.0,
    "late_days": lambda r: -(r.total.average_days_overdue or 0.0),
    "unit": lambda r: r.unit,
}


def sort_units(rows: list[UnitRow], key: str) -> list[UnitRow]:
    return sorted(rows, key=SORT_KEYS.get(key, SORT_KEYS["overdue"]))


def drill(
    session: Session, filters: Filters, now: datetime, role: str | None = None, limit: int = 500
) -> list[tuple[HumanTask, str]]:
    """The steps behind a number: the same filters, newest due first."""
    query = _dated(_status(_steps(filters, role_is=role), filters, now), filters)
    rows = session.execute(
        query.order_by(HumanTask.due_at.asc().nulls_last(), HumanTask.id).limit(limit)
    ).all()
    return [(task, str(r)) for task, _plan, r in rows]


# --- the yearly timeliness score -------------------------------------------------------------


@dataclass(frozen=True)
class ScoreFormula:
    """score = base × on-time rate − per_overdue_day × average days overdue
    − per_send_back × items sent back, never below 0. Settings `score.base`,
    `score.per_overdue_day`, `score.per_send_back` per jurisdiction."""

    base: float = 100.0
    per_overdue_day: float = 2.0
    per_send_back: float = 5.0

    @classmethod
    def for_jurisdiction(cls, session: Session, jurisdiction_id: int) -> ScoreFormula:
        from .models import JurisdictionSetting

        values = dict(
            session.execute(
                select(JurisdictionSetting.key, JurisdictionSetting.value).where(
                    JurisdictionSetting.jurisdiction_id == jurisdiction_id,
                    JurisdictionSetting.key.like("score.%"),
                )
            ).all()
        )
        base = cls()
        return cls(
            **{
                name: float(values.get(f"score.{name}", getattr(base, name)))
                for name in ("base", "per_overdue_day", "per_send_back")
            }
        )

    def score(self, counts: Counts) -> float | None:
        """None for a unit with nothing completed and nothing late: nothing to judge."""
        if not counts.completed and not counts.late:
            return None
        rate = counts.on_time_rate if counts.on_time_rate is not None else 0.0
        value = (
            self.base * rate
            - self.per_overdue_day * (counts.average_days_overdue or 0.0)
            - self.per_send_back * counts.sent_back
        )
        return round(max(value, 0.0), 1)
