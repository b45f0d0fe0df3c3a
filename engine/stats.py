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

from sqlalchemy import Date, String, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session, aliased

from .access import DUE_SOON
from .direct import Direct, defer
from .models import (
    HumanTask,
    Instance,
    Plan,
    PlanTask,
    PlanTaskUnit,
    Role,
    StepTally,
    TaskState,
    Unit,
)
from .runtime import COMPLETED

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
    """Open steps are counted as they stand now (they are few: one step in ten); completed
    steps come from their tallies (engine.stats._tally), by list, unit, role and day."""
    by_unit: dict[int, UnitRow] = {}
    by_plan: dict[int, Counts] = {}
    totals = Counts()
    names = dict(session.execute(select(Unit.id, Unit.name)).all())

    def add(plan_id: int, unit_id: int, role: str, counts: Counts) -> None:
        entry = by_unit.setdefault(unit_id, UnitRow(unit_id, names.get(unit_id, "?")))
        entry.by_role.setdefault(str(role), Counts()).add(counts)
        by_plan.setdefault(plan_id, Counts()).add(counts)
        totals.add(counts)

    if filters.status != "completed":
        for plan_id, unit_id, role, *values in _open_counts(session, filters, now):
            o, soon, over, late_days = (x or 0 for x in values)
            add(plan_id, unit_id, role, Counts(o, soon, over, 0, 0, 0, float(late_days), over))
    if filters.status in (None, "completed"):
        for plan_id, unit_id, role, completed, on_time, sent_back, late_days, late in _tallies(
            session, filters
        ):
            add(
                plan_id,
                unit_id,
                role,
                Counts(0, 0, 0, completed, on_time, sent_back, float(late_days or 0), late),
            )
    plans = {
        p.id: p
        for p in session.scalars(
            select(Plan).where(Plan.jurisdiction_id.in_(filters.jurisdiction_ids))
        )
    }
    lists = sorted(((plans[p], c) for p, c in by_plan.items()), key=lambda pc: pc[0].id)
    return Dashboard(
        lists,
        sorted(by_unit.values(), key=lambda r: -r.total.overdue),
        _weekly(session, filters, now),
        totals,
    )


def _open_counts(session: Session, filters: Filters, now: datetime) -> list[Any]:
    """Open steps by list, unit and role, from the steps' own columns (one table, the partial
    index on open steps by list)."""
    plans = select(Plan.id).where(Plan.jurisdiction_id.in_(filters.jurisdiction_ids))
    if filters.plan_key:
        plans = plans.where(Plan.key == filters.plan_key)
    query = select(HumanTask.plan_id, HumanTask.unit_id, HumanTask.role, HumanTask.due_at).where(
        HumanTask.state == TaskState.READY, HumanTask.plan_id.in_(plans)
    )
    if filters.unit_id is not None:
        query = query.where(HumanTask.unit_id == filters.unit_id)
    steps = _dated(_status(query, filters, now), filters).subquery()
    late = steps.c.due_at < now

    def one(flag: Any) -> Any:
        return func.sum(case((flag, 1), else_=0))

    groups = (steps.c.plan_id, steps.c.unit_id, steps.c.role)
    return list(
        session.execute(
            select(
                *groups,
                func.count(),
                one(and_(steps.c.due_at >= now, steps.c.due_at <= now + DUE_SOON)),
                one(late),
                func.sum(case((late, _days(session, literal(now), steps.c.due_at)), else_=0.0)),
            ).group_by(*groups)
        ).all()
    )


def _tally_filter(query: Any, filters: Filters) -> Any:
    plans = select(Plan.id).where(Plan.jurisdiction_id.in_(filters.jurisdiction_ids))
    if filters.plan_key:
        plans = plans.where(Plan.key == filters.plan_key)
    query = query.where(StepTally.plan_id.in_(plans))
    if filters.unit_id is not None:
        query = query.where(StepTally.unit_id == filters.unit_id)
    if filters.since is not None:
        query = query.where(StepTally.day >= filters.since)
    if filters.until is not None:
        query = query.where(StepTally.day <= filters.until)
    return query


def _tallies(session: Session, filters: Filters) -> list[Any]:
    """The tallies summed over the days in range, by list, unit and role."""
    t = StepTally
    groups = (t.plan_id, t.unit_id, t.role)
    query = select(
        *groups,
        func.sum(t.completed),
        func.sum(t.on_time),
        func.sum(t.sent_back),
        func.sum(t.late_days),
        func.sum(t.late),
    ).group_by(*groups)
    return list(session.execute(_tally_filter(query, filters)).all())


def _weekly(session: Session, filters: Filters, now: datetime) -> list[tuple[date, int]]:
    """Completions per week over the last twelve, from the daily tallies."""
    start = _local_day(now) - timedelta(weeks=11)
    monday = start - timedelta(days=start.weekday())
    recent = Filters(**{**filters.__dict__, "since": max(monday, filters.since or monday)})
    query = select(StepTally.day, func.sum(StepTally.completed)).group_by(StepTally.day)
    weeks: dict[date, int] = defaultdict(int)
    for day, completed in session.execute(_tally_filter(query, recent)):
        weeks[day - timedelta(days=day.weekday())] += int(completed or 0)
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


# --- tallies of completed steps ---------------------------------------------------------------


def _local_day(at: datetime) -> date:
    from .clock import local_today

    return local_today(at)


_COUNTERS = ("completed", "on_time", "late", "late_days", "sent_back")
_BUMP: dict[str, Direct] = {}  # per dialect: the upsert, built once (it runs on every step)


def _bump_statement(dialect: str) -> Direct:
    if dialect not in _BUMP:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        table: Any = StepTally.__table__
        statement = insert(table)
        _BUMP[dialect] = Direct(
            statement.on_conflict_do_update(
                index_elements=["plan_id", "unit_id", "role", "day"],
                set_={name: table.c[name] + statement.excluded[name] for name in _COUNTERS},
            )
        )
    return _BUMP[dialect]


def _bump(session: Any, key: dict[str, Any], **add: float) -> None:
    """Add to one tally row, creating it if needed, in one statement on either backend
    (`session` may be a Session or a Connection)."""
    connection = session.connection() if isinstance(session, Session) else session
    row = {name: 0 for name in _COUNTERS} | add | key
    defer(connection, _bump_statement(connection.dialect.name), row)


def _plan_and_role(session: Session, plan_task_id: int, unit_id: int) -> tuple[int, str]:
    """The step's list and its unit's role in the item, in one statement."""
    plan_id, role = session.execute(
        select(PlanTask.plan_id, PlanTaskUnit.role)
        .outerjoin(
            PlanTaskUnit,
            and_(PlanTaskUnit.plan_task_id == PlanTask.id, PlanTaskUnit.unit_id == unit_id),
        )
        .where(PlanTask.id == plan_task_id)
    ).one()
    return plan_id, role.value if role is not None else "office"


def _tally(session: Session, instance: Instance, task: HumanTask, now: datetime) -> None:
    """Count a completed step of a routed item; a send-back counts against the lead unit."""
    if instance.plan_task_id is None or task.unit_id is None:
        return
    if task.plan_id is not None and task.role is not None:  # copied at the step's creation
        plan_id, role = task.plan_id, task.role
    else:
        plan_id, role = _plan_and_role(session, instance.plan_task_id, task.unit_id)
    day = _local_day(now)
    key = {"plan_id": plan_id, "unit_id": task.unit_id, "day": day}
    on_time = task.due_at is None or now <= task.due_at
    late_days = 0.0 if on_time else (now - task.due_at).total_seconds() / 86400  # type: ignore[operator]
    _bump(
        session,
        {**key, "role": role},
        completed=1,
        on_time=int(on_time),
        late=int(not on_time),
        late_days=late_days,
    )
    if task.form == "review" and (task.form_data or {}).get("decision") == "send_back":
        lead = session.scalar(
            select(PlanTaskUnit.unit_id)
            .where(
                PlanTaskUnit.plan_task_id == instance.plan_task_id, PlanTaskUnit.role == Role.LEAD
            )
            .order_by(PlanTaskUnit.ordinal)
            .limit(1)
        )
        if lead is not None:
            _bump(
                session,
                {"plan_id": plan_id, "unit_id": lead, "role": "lead", "day": day},
                sent_back=1,
            )


COMPLETED.append(_tally)


def rebuild_tallies(connection: Any) -> None:
    """Recount every completed step from scratch (the migration, a bulk load, a repair)."""
    from sqlalchemy import delete, insert

    dialect = connection.dialect.name
    ptu = aliased(PlanTaskUnit)
    role = func.coalesce(cast(ptu.role, String), literal("office"))
    if dialect == "postgresql":
        day: Any = cast(func.timezone("Asia/Shanghai", HumanTask.completed_at), Date)
        late_days: Any = func.extract("epoch", HumanTask.completed_at - HumanTask.due_at) / 86400.0
    else:
        day = func.date(HumanTask.completed_at, "+8 hours")
        late_days = func.julianday(HumanTask.completed_at) - func.julianday(HumanTask.due_at)
    late = and_(HumanTask.due_at.is_not(None), HumanTask.completed_at > HumanTask.due_at)
    counted = (
        select(
            PlanTask.plan_id,
            HumanTask.unit_id,
            role.label("role"),
            day.label("day"),
            func.count(),
            func.sum(case((late, 0), else_=1)),
            func.sum(case((late, 1), else_=0)),
            func.sum(case((late, late_days), else_=0.0)),
            literal(0),
        )
        .join(Instance, Instance.id == HumanTask.instance_id)
        .join(PlanTask, PlanTask.id == Instance.plan_task_id)
        .outerjoin(ptu, and_(ptu.plan_task_id == PlanTask.id, ptu.unit_id == HumanTask.unit_id))
        .where(HumanTask.state == TaskState.COMPLETED, HumanTask.unit_id.is_not(None))
        .group_by(PlanTask.plan_id, HumanTask.unit_id, role, day)
    )
    columns = [
        "plan_id",
        "unit_id",
        "role",
        "day",
        "completed",
        "on_time",
        "late",
        "late_days",
        "sent_back",
    ]
    connection.execute(delete(StepTally))
    connection.execute(insert(StepTally).from_select(columns, counted))
    # Send-backs count against the item's first lead unit, on the day of the review.
    first_lead = (
        select(PlanTaskUnit.unit_id)
        .where(PlanTaskUnit.plan_task_id == PlanTask.id, PlanTaskUnit.role == Role.LEAD)
        .order_by(PlanTaskUnit.ordinal)
        .limit(1)
        .scalar_subquery()
    )
    sent_back = connection.execute(
        select(PlanTask.plan_id, first_lead, day, func.count())
        .join(Instance, Instance.id == HumanTask.instance_id)
        .join(PlanTask, PlanTask.id == Instance.plan_task_id)
        .where(
            HumanTask.state == TaskState.COMPLETED,
            HumanTask.form == "review",
            HumanTask.form_data["decision"].as_string() == "send_back",
        )
        .group_by(PlanTask.plan_id, first_lead, day)
    ).all()
    for plan_id, lead, on_day, count in sent_back:
        if lead is not None:
            when = on_day if isinstance(on_day, date) else date.fromisoformat(str(on_day))
            key = {"plan_id": plan_id, "unit_id": lead, "role": "lead", "day": when}
            _bump(connection, key, sent_back=count)


def backfill_step_plans(connection: Any) -> None:
    """Copy each routed step's list and its unit's role onto the step (what runtime does at
    creation), for steps that predate the columns or were bulk-loaded."""
    from sqlalchemy import update

    plan = (
        select(PlanTask.plan_id)
        .join(Instance, Instance.plan_task_id == PlanTask.id)
        .where(Instance.id == HumanTask.instance_id)
        .scalar_subquery()
    )
    role = (
        select(cast(PlanTaskUnit.role, String))
        .join(Instance, Instance.plan_task_id == PlanTaskUnit.plan_task_id)
        .where(Instance.id == HumanTask.instance_id, PlanTaskUnit.unit_id == HumanTask.unit_id)
        .scalar_subquery()
    )
    routed = select(Instance.id).where(Instance.plan_task_id.is_not(None))
    connection.execute(
        update(HumanTask)
        .where(
            HumanTask.instance_id.in_(routed),
            HumanTask.unit_id.is_not(None),
            HumanTask.plan_id.is_(None),
        )
        .values(plan_id=plan, role=func.coalesce(role, "office"))
        .execution_options(synchronize_session=False)
    )
