"""Who may see and do what. Rights come from the positions a person holds right now:
a liaison acts for their unit, a unit head sees the unit's work, the office director and the
office staff see every item of their jurisdiction, an administrator manages the directory and
deployments. Nothing here trusts an id from a request: every lookup is checked against these."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, and_, bindparam, false, func, or_, select
from sqlalchemy.orm import Session, aliased, defer, joinedload

from .accounts import TOKEN_HOLDER, TokenHolder, token_digest, token_usable
from .direct import Direct, rows, rows_each
from .models import (
    Account,
    ApiToken,
    Holding,
    HumanTask,
    Instance,
    Jurisdiction,
    Plan,
    PlanTask,
    Position,
    PositionKind,
    TaskState,
    Unit,
)

DUE_SOON = timedelta(days=3)
# Processes whose steps only their own unit sees: a bureau handling a medical-assistance
# application sees its step, not the other bureaus' (personal data travels no further).
STEP_PRIVATE_PROCESSES = frozenset({"medical_assistance"})
OFFICE_KINDS = (PositionKind.OFFICE_DIRECTOR, PositionKind.OFFICE_STAFF)


class Urgency(enum.StrEnum):
    """红黄绿灯: overdue, due within three days, on track."""

    RED = "red"
    YELLOW = "yellow"
    GREEN = "green"


def urgency(due_at: datetime | None, now: datetime) -> Urgency:
    if due_at is None or due_at > now + DUE_SOON:
        return Urgency.GREEN
    return Urgency.RED if due_at < now else Urgency.YELLOW


@dataclass(frozen=True)
class Seat:
    position_id: int
    unit_id: int
    kind: PositionKind


@dataclass(frozen=True)
class Viewer:
    account_id: int
    person_id: int
    is_admin: bool
    seats: tuple[Seat, ...]
    office_jurisdiction_ids: frozenset[int] = field(default_factory=frozenset)
    # Positions whose steps the viewer may complete: their own, and for an office director
    # the office staff's too (resolved once, so the inbox is one indexed IN list).
    acting_position_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def position_ids(self) -> set[int]:
        return {s.position_id for s in self.seats}

    @property
    def unit_ids(self) -> set[int]:
        return {s.unit_id for s in self.seats}

    @property
    def head_unit_ids(self) -> set[int]:
        return {s.unit_id for s in self.seats if s.kind == PositionKind.HEAD}

    @property
    def is_office(self) -> bool:
        return bool(self.office_jurisdiction_ids)


class AccountLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def person_id(self) -> int: ...
    @property
    def is_admin(self) -> bool: ...


# Built once: every request reads the signed-in person's seats.
_SEATS = Direct(
    select(Position.id, Position.unit_id, Position.kind)
    .join(Holding, Holding.position_id == Position.id)
    .where(Holding.person_id == bindparam("person_id"), Holding.ended_at.is_(None))
)


_TOKEN_SEATS = Direct(  # the seats of the person whose active account holds a bearer token
    select(Position.id, Position.unit_id, Position.kind)
    .join(Holding, Holding.position_id == Position.id)
    .join(Account, Account.person_id == Holding.person_id)
    .join(ApiToken, ApiToken.account_id == Account.id)
    .where(*token_usable(), Holding.ended_at.is_(None))
)


def bearer(session: Session, token: str) -> tuple[TokenHolder, Viewer] | None:
    """The account holding a bearer token and what it may see, unless the token is unknown or
    revoked: token, account and seats in one round trip on PostgreSQL."""
    session.flush()  # an account, token or seat changed through the ORM counts
    digest = {"digest": token_digest(token)}
    found, seats = rows_each(session.connection(), (TOKEN_HOLDER, digest), (_TOKEN_SEATS, digest))
    if not found:
        return None
    holder = TokenHolder(*found[0].values())
    return holder, _viewer(session, holder, seats)


def viewer_for(session: Session, account: AccountLike) -> Viewer:
    """One query for the seats; two more only for a holder of an office seat."""
    session.flush()  # a seat just taken through the ORM counts
    return _viewer(
        session, account, rows(session.connection(), _SEATS, {"person_id": account.person_id})
    )


def _viewer(session: Session, account: AccountLike, found: list[dict[str, Any]]) -> Viewer:
    seats = tuple(Seat(r["id"], r["unit_id"], r["kind"]) for r in found)
    acting = {s.position_id for s in seats}
    offices: frozenset[int] = frozenset()
    office_units = {s.unit_id for s in seats if s.kind in OFFICE_KINDS}
    if office_units:
        offices = frozenset(
            session.scalars(
                select(Jurisdiction.id).where(Jurisdiction.office_unit_id.in_(office_units))
            )
        )
    director_units = [s.unit_id for s in seats if s.kind == PositionKind.OFFICE_DIRECTOR]
    if director_units:
        acting |= set(
            session.scalars(
                select(Position.id).where(
                    Position.unit_id.in_(director_units),
                    Position.kind == PositionKind.OFFICE_STAFF,
                )
            )
        )
    acting_ids = frozenset(acting)
    return Viewer(account.id, account.person_id, account.is_admin, seats, offices, acting_ids)


def acting_position(viewer: Viewer, task: HumanTask) -> int | None:
    """The viewer's position that may complete `task`, if any (see runtime.may_act)."""
    if task.position is None:  # an applicant's own step (engine.assistance)
        return None
    for seat in viewer.seats:
        if seat.unit_id != task.unit_id:
            continue
        if seat.position_id == task.position_id:
            return seat.position_id
        if seat.kind == PositionKind.OFFICE_DIRECTOR and task.position.kind == (
            PositionKind.OFFICE_STAFF
        ):
            return seat.position_id
    return None


def _item_jurisdiction(session: Session, instance: Instance) -> int | None:
    return session.scalar(
        select(Plan.jurisdiction_id)
        .join(PlanTask, PlanTask.plan_id == Plan.id)
        .where(PlanTask.id == instance.plan_task_id)
    )


def can_see_item(session: Session, viewer: Viewer, root: Instance) -> bool:
    """An item is visible to the office of its jurisdiction and to every unit taking part."""
    if viewer.office_jurisdiction_ids and (
        _item_jurisdiction(session, root) in viewer.office_jurisdiction_ids
    ):
        return True
    if not viewer.unit_ids:
        return False
    tree = select(Instance.id).where(Instance.root_id == root.id)
    return (
        session.scalar(
            select(HumanTask.id)
            .where(HumanTask.instance_id.in_(tree), HumanTask.unit_id.in_(viewer.unit_ids))
            .limit(1)
        )
        is not None
    )


def can_see_task(session: Session, viewer: Viewer, task: HumanTask) -> bool:
    """A unit's step; an applicant's own step is shown only in the applicant's portal."""
    if task.account_id is not None:
        return False
    if acting_position(viewer, task) is not None or task.unit_id in viewer.head_unit_ids:
        return True
    if task.instance.process_id in STEP_PRIVATE_PROCESSES:
        return False
    root = session.get(Instance, task.instance.root_id)
    return root is not None and can_see_item(session, viewer, root)


@dataclass(frozen=True)
class InboxFilter:
    plan_key: str | None = None
    urgency: Urgency | None = None
    due_within_days: int | None = None
    # mine: steps the viewer may act on; unit: also the unit's steps for its head;
    # all: every open step of the viewer's jurisdictions (office only).
    scope: str = "mine"


def _visible_steps(viewer: Viewer, scope: str) -> Select[HumanTask]:
    query = select(HumanTask)
    conditions = [HumanTask.position_id.in_(viewer.acting_position_ids)]
    if scope in ("unit", "all") and viewer.head_unit_ids:
        conditions.append(HumanTask.unit_id.in_(viewer.head_unit_ids))
    if scope == "all" and viewer.office_jurisdiction_ids:
        # A routed item's steps carry their list (engine.runtime._human_task), so the office's
        # steps are found without visiting every instance of the jurisdiction's items: over
        # 103,468 open steps the page's rows 32.7 -> 1.0 ms, its count 213 -> 151 ms
        # (EXPLAIN ANALYZE, bench_web part A, 2026-11-26).
        in_office = select(Plan.id).where(Plan.jurisdiction_id.in_(viewer.office_jurisdiction_ids))
        conditions.append(HumanTask.plan_id.in_(in_office))
    return query.where(or_(*conditions) if conditions else false())


def _inbox_query(viewer: Viewer, now: datetime, f: InboxFilter) -> Select[Any]:
    query = _visible_steps(viewer, f.scope).where(HumanTask.state == TaskState.READY)
    if f.plan_key:
        query = query.where(HumanTask.plan_id.in_(select(Plan.id).where(Plan.key == f.plan_key)))
    if f.urgency == Urgency.RED:
        query = query.where(HumanTask.due_at < now)
    elif f.urgency == Urgency.YELLOW:
        query = query.where(HumanTask.due_at >= now, HumanTask.due_at <= now + DUE_SOON)
    elif f.urgency == Urgency.GREEN:
        query = query.where(or_(HumanTask.due_at.is_(None), HumanTask.due_at > now + DUE_SOON))
    if f.due_within_days is not None:
        query = query.where(
            and_(
                HumanTask.due_at.is_not(None),
                HumanTask.due_at <= now + timedelta(days=f.due_within_days),
            )
        )
    return query


# Same order as "undated last", written so the partial indexes can deliver it.
_URGENT_FIRST = (HumanTask.due_at.asc().nulls_last(), HumanTask.id)


def _count(
    session: Session, query: Callable[[], Select[Any]], rows: list[Any], limit: int, offset: int
) -> int:
    if offset == 0 and len(rows) < limit:  # the whole list fits the page: no count needed
        return len(rows)
    return session.scalar(select(func.count()).select_from(query().subquery())) or 0


def inbox(
    session: Session,
    viewer: Viewer,
    now: datetime,
    filters: InboxFilter | None = None,
    limit: int = 100,
    offset: int = 0,
    loads: tuple[Any, ...] | None = None,
) -> tuple[list[HumanTask], int]:
    """Open steps, most urgent first (overdue, then by due date, undated last), and the count.
    `loads`: what is loaded with each row (default: what the inbox page shows)."""
    query = _inbox_query(viewer, now, filters or InboxFilter())
    rows = list(
        session.scalars(
            query.options(*(INBOX_LOADS if loads is None else loads))
            .order_by(*_URGENT_FIRST)
            .limit(limit)
            .offset(offset)
        )
    )
    return rows, _count(session, lambda: query, rows, limit, offset)


_ROOT = aliased(Instance)
_Selected = TypeVar("_Selected", bound=Select)  # type: ignore[type-arg]  # any row shape
# The item an instance belongs to: its top-level instance and that one's entry in its list.
ITEM_COLUMNS = (
    _ROOT.id.label("root_id"),
    _ROOT.business_key,
    Plan.key.label("plan_key"),
    PlanTask.number,
    PlanTask.text,
)


def join_item(query: _Selected) -> _Selected:
    """`query` (with `instance` among its tables) joined to what ITEM_COLUMNS reads."""
    joined: _Selected = (
        query.join(_ROOT, _ROOT.id == Instance.root_id)
        .outerjoin(PlanTask, PlanTask.id == _ROOT.plan_task_id)
        .outerjoin(Plan, Plan.id == PlanTask.plan_id)
    )
    return joined


# An inbox row as plain columns: the step, its unit and position, the item it belongs to.
STEP_ROW = (
    HumanTask.id,
    HumanTask.name,
    HumanTask.element_id,
    HumanTask.form,
    HumanTask.state,
    HumanTask.due_at,
    HumanTask.created_at,
    HumanTask.completed_at,
    HumanTask.instance_id,
    Unit.id.label("unit_id"),
    Unit.name.label("unit_name"),
    Position.id.label("position_id"),
    Position.kind.label("position_kind"),
    Position.title.label("position_title"),
    *ITEM_COLUMNS,
)


def _step_rows(query: Select[Any]) -> Select[Any]:
    """`query` (over human_task) selecting STEP_ROW, most urgent first."""
    steps = (
        query.with_only_columns(*STEP_ROW, maintain_column_froms=False)
        .select_from(HumanTask)
        .join(Unit, Unit.id == HumanTask.unit_id)
        .join(Position, Position.id == HumanTask.position_id)
        .join(Instance, Instance.id == HumanTask.instance_id)
    )
    selected: Any = join_item(steps).order_by(*_URGENT_FIRST)
    return selected


# The inbox every poll asks for (the viewer's own steps, no filter), built once per number of
# acting positions (a liaison has one or two): it goes to the driver directly (engine.direct).
_PLAIN_INBOX: dict[int, Direct] = {}
_PLAIN_MAX_SEATS = 8


def _plain_inbox(seats: int) -> Direct:
    if seats not in _PLAIN_INBOX:
        mine = HumanTask.position_id.in_([bindparam(f"seat{i}") for i in range(seats)])
        query = select(HumanTask).where(mine, HumanTask.state == TaskState.READY)
        _PLAIN_INBOX[seats] = Direct(
            _step_rows(query).limit(bindparam("limit")).offset(bindparam("offset"))
        )
    return _PLAIN_INBOX[seats]


def inbox_rows(
    session: Session,
    viewer: Viewer,
    now: datetime,
    filters: InboxFilter | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Mapping[str, Any]], int]:
    """The inbox as rows of STEP_ROW (mappings), in one statement and without building objects:
    for lists that show each step with its unit, position and item, and nothing more (the
    JSON API). Steps without a position (an applicant's own) are not in it."""
    f = filters or InboxFilter()
    seats = sorted(viewer.acting_position_ids)
    if f == InboxFilter() and 0 < len(seats) <= _PLAIN_MAX_SEATS:
        params: dict[str, Any] = {f"seat{i}": seat for i, seat in enumerate(seats)}
        found: list[Mapping[str, Any]] = list(
            rows(
                session.connection(),
                _plain_inbox(len(seats)),
                {**params, "limit": limit, "offset": offset},
            )
        )
    else:
        statement = _step_rows(_inbox_query(viewer, now, f)).limit(limit).offset(offset)
        found = [dict(row) for row in session.connection().execute(statement).mappings()]
    return found, _count(session, lambda: _inbox_query(viewer, now, f), found, limit, offset)


# What an inbox row shows, loaded with the rows rather than one query per row.
INBOX_LOADS = (
    joinedload(HumanTask.unit),
    joinedload(HumanTask.position),
    joinedload(HumanTask.instance).options(
        defer(Instance.state),  # kilobytes a row the list never shows
        joinedload(Instance.plan_task).joinedload(PlanTask.plan).joinedload(Plan.jurisdiction),
    ),
)


def done_list(session: Session, viewer: Viewer, limit: int = 100) -> list[HumanTask]:
    """What the viewer's units completed (已办), newest first."""
    return list(
        session.scalars(
            select(HumanTask)
            .where(
                HumanTask.state == TaskState.COMPLETED,
                HumanTask.unit_id.in_(viewer.unit_ids),
            )
            .options(*INBOX_LOADS)
            .order_by(HumanTask.completed_at.desc(), HumanTask.id.desc())
            .limit(limit)
        )
    )


def unit_names(session: Session, unit_ids: set[int]) -> dict[int, str]:
    return dict(session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(unit_ids))).all())
