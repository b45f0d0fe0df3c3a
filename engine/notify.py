"""Notifications, written in the transaction that causes them: one in-app notice per person and
one outbox row per other channel the person uses. Sending happens after commit, from the outbox
(notifications.outbox). The context is what the message templates show: names of steps and
units, item numbers, dates — never personal data such as resident ID numbers.

A transaction's notices are gathered as they arise and written together as it commits, in the
order they arose: who holds each seat, everyone's addresses and channel settings and the units
the contexts name are then read for all of them in one round trip on PostgreSQL, and the
notices and deliveries go out with the COMMIT (through the ORM that was six round trips more
per step that told someone). A transaction that rolls back writes none."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, event, func, insert, select
from sqlalchemy.orm import Session

from .direct import Direct, defer, defer_many, execute, execute_many, rows_each
from .loaded import as_loaded
from .models import (
    ChannelPreference,
    Holding,
    Notification,
    Outbox,
    Person,
    Position,
    PositionKind,
    Unit,
)

EVENTS = (
    "task_assigned",
    "due_soon",
    "overdue",
    "urged",
    "escalated",
    "sent_back",
    "extension_decided",
    "application_status",
    "minutes_to_review",
    "minutes_signed",
    "yearly_meeting_due",
)
CHANNELS = ("email", "webhook")


def holders_of(session: Session, position_ids: Iterable[int]) -> list[int]:
    """Who holds these positions now (the people a position's step is meant for)."""
    ids = list(dict.fromkeys(position_ids))
    if not ids:
        return []
    found = session.execute(_SEAT_HOLDERS, {"ids": ids})
    return list(dict.fromkeys(person_id for _position_id, person_id in found))


def seat(session: Session, unit_id: int | None, kind: PositionKind) -> int | None:
    if unit_id is None:
        return None
    return session.scalar(
        select(Position.id).where(Position.unit_id == unit_id, Position.kind == kind)
    )


Context = dict[str, Any] | Callable[[], dict[str, Any]]  # a callable: built only if sent


@dataclass(frozen=True)
class _Notice:
    people: tuple[int, ...]  # told by name
    seat: int | None  # and whoever holds this position when the transaction commits
    event: str
    context: Context
    link: str
    at: datetime
    unit_id: int | None  # a unit the context names: all of them are read in one query


_PENDING = "duban.pending_notices"


def notify(
    session: Session,
    person_ids: Iterable[int],
    event: str,
    context: Context,
    link: str,
    now: datetime,
    seat: int | None = None,
    unit_id: int | None = None,
) -> None:
    """One notice per person (each once), and their outbox deliveries, written as the
    transaction commits. `seat`: the holders of this position are told as well (read then).
    `context` may be a callable, called then only if someone is told; `unit_id`: a unit it
    names, read together with those of the transaction's other notices."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event '{event}'")
    people = tuple(dict.fromkeys(person_ids))
    notice = _Notice(people, seat, event, context, link, now, unit_id)
    if notice.people or seat is not None:
        session.info.setdefault(_PENDING, []).append(notice)


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending: list[_Notice] = session.info.pop(_PENDING, [])
    if pending:
        _write(session, pending)


@event.listens_for(Session, "after_transaction_end")
def _drop_pending(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # rolled back (a commit has written and removed them)
        session.info.pop(_PENDING, None)


def _write(session: Session, pending: list[_Notice]) -> None:
    session.flush()  # the reads below are Core: they see only what has been written
    conn = session.connection()
    seats = list(dict.fromkeys(n.seat for n in pending if n.seat is not None))
    named = list(dict.fromkeys(p for n in pending for p in n.people))
    units = list(dict.fromkeys(n.unit_id for n in pending if n.unit_id is not None))
    # Who holds each seat, how everyone told wants to be told, and the units the contexts
    # name: one round trip on PostgreSQL.
    found = rows_each(
        conn,
        *[(_SEAT_CHANNELS, {"seat": seat}) for seat in seats],
        *[(_PERSON_CHANNELS, {"person": person}) for person in named],
        *[(_UNIT, {"unit_id": unit}) for unit in units],
    )
    channels: dict[int, _Channels] = {}
    holders: dict[int, list[int]] = {}
    for seat, lines in zip(seats, found, strict=False):
        holders[seat] = list(dict.fromkeys(line["person_id"] for line in lines))
    for lines in found[: len(seats) + len(named)]:
        for line in lines:
            got = channels.setdefault(line["person_id"], _Channels(line["email"]))
            if line["channel"] is not None:
                got.settings[line["channel"]] = (line["enabled"], line["address"])
    told = [
        (n, list(dict.fromkeys([*n.people, *holders.get(n.seat, [])])))
        if n.seat is not None
        else (n, list(n.people))
        for n in pending
    ]
    if not any(people for _, people in told):
        return
    for lines in found[len(seats) + len(named) :]:  # into the session: each context's task.unit
        for line in lines:
            as_loaded(session, Unit, line)
    for notice, people in told:
        if not people:
            continue
        context = notice.context() if callable(notice.context) else notice.context
        for person_id in people:
            _tell(conn, notice, context, person_id, channels.get(person_id))


@dataclass
class _Channels:
    email: str  # the person's own address
    settings: dict[str, tuple[bool, str]] = field(default_factory=dict)  # channel: enabled, address

    def addresses(self) -> list[tuple[str, str]]:
        """(channel, address) of every channel the person is reached on."""
        found = []
        for channel in CHANNELS:
            enabled, address = self.settings.get(channel, (True, ""))
            # E-mail goes to the person's address unless they gave another; a webhook only
            # where the person set one up.
            address = address or (self.email if channel == "email" else "")
            if enabled and address:
                found.append((channel, address))
        return found


def _tell(
    conn: Connection,
    notice: _Notice,
    context: dict[str, Any],
    person_id: int,
    channels: _Channels | None,
) -> None:
    """One in-app notice and its outbox deliveries. On PostgreSQL both wait for the COMMIT
    (a delivery finds its notice with the sequence's currval, the notice being the last row
    this connection inserted there); on SQLite they are written now."""
    values = {
        "person_id": person_id,
        "event": notice.event,
        "context": context,
        "link": notice.link,
        "created_at": notice.at,
        "read_at": None,
    }
    deliveries = [
        {
            "channel": channel,
            "address": address,
            "attempts": 0,
            "next_attempt_at": notice.at,
            "sent_at": None,
            "last_error": "",
        }
        for channel, address in (channels.addresses() if channels else [])
    ]
    if conn.dialect.name == "postgresql":
        defer(conn, _ADD_NOTICE, values)
        defer_many(conn, _ADD_DELIVERY_OF_LAST, deliveries)
        return
    notice_id = execute(conn, _ADD_NOTICE_RETURNING, values).fetchone()[0]
    execute_many(conn, _ADD_DELIVERY, [{**d, "notification_id": notice_id} for d in deliveries])


_CHANNEL_COLUMNS = (
    ChannelPreference.channel,
    ChannelPreference.enabled,
    ChannelPreference.address,
)
_SEAT_CHANNELS = Direct(  # the seat's holders, each with their channel settings
    select(Holding.person_id, Person.email, *_CHANNEL_COLUMNS)
    .join(Person, Person.id == Holding.person_id)
    .outerjoin(ChannelPreference, ChannelPreference.person_id == Holding.person_id)
    .where(Holding.position_id == bindparam("seat"), Holding.ended_at.is_(None))
    .order_by(Holding.id)
)
_PERSON_CHANNELS = Direct(
    select(Person.id.label("person_id"), Person.email, *_CHANNEL_COLUMNS)
    .outerjoin(ChannelPreference, ChannelPreference.person_id == Person.id)
    .where(Person.id == bindparam("person"))
)
_UNIT = Direct(select(*cast(Table, Unit.__table__).c).where(Unit.id == bindparam("unit_id")))
_NOTIFICATION = cast(Table, Notification.__table__)
_OUTBOX = cast(Table, Outbox.__table__)
_ADD_NOTICE = Direct(insert(_NOTIFICATION))
_ADD_NOTICE_RETURNING = Direct(insert(_NOTIFICATION).returning(_NOTIFICATION.c.id))
_ADD_DELIVERY = Direct(insert(_OUTBOX))
_ADD_DELIVERY_OF_LAST = Direct(
    insert(_OUTBOX).values(
        notification_id=func.currval(func.pg_get_serial_sequence("notification", "id"))
    )
)


_SEAT_HOLDERS = (
    select(Holding.position_id, Holding.person_id)
    .where(Holding.position_id.in_(bindparam("ids", expanding=True)), Holding.ended_at.is_(None))
    .order_by(Holding.id)
)


def unread_count(session: Session, person_id: int) -> int:
    from sqlalchemy import func

    return int(
        session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(Notification.person_id == person_id, Notification.read_at.is_(None))
        )
        or 0
    )
