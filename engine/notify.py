"""Notifications, written in the transaction that causes them: one in-app notice per person and
one outbox row per other channel the person uses. Sending happens after commit, from the outbox
(notifications.outbox). The context is what the message templates show: names of steps and
units, item numbers, dates — never personal data such as resident ID numbers.

A transaction's notices are gathered as they arise and written together as it commits, in the
order they arose: who holds each seat, their addresses and channel settings are then read once
for all of them. A step that starts 13 branches used to read them 13 times over (four round
trips per new step on PostgreSQL); a transaction that rolls back writes none."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session

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
    seats = list(dict.fromkeys(n.seat for n in pending if n.seat is not None))
    holders: dict[int, list[int]] = {}
    if seats:
        for position_id, person_id in session.execute(_SEAT_HOLDERS, {"ids": seats}):
            holders.setdefault(position_id, []).append(person_id)
    told = [
        (n, list(dict.fromkeys([*n.people, *holders.get(n.seat, [])])))
        if n.seat is not None
        else (n, list(n.people))
        for n in pending
    ]
    everyone = list(dict.fromkeys(p for _, people in told for p in people))
    if not everyone:
        return
    units = {n.unit_id for n, people in told if people and n.unit_id is not None}
    if units:  # into the session, where each context's task.unit finds its own
        session.scalars(select(Unit).where(Unit.id.in_(units))).all()
    emails = dict(
        session.execute(select(Person.id, Person.email).where(Person.id.in_(everyone))).all()
    )
    prefs: dict[tuple[int, str], ChannelPreference] = {
        (p.person_id, p.channel): p
        for p in session.scalars(
            select(ChannelPreference).where(ChannelPreference.person_id.in_(everyone))
        )
    }
    for notice, people in told:
        context = notice.context() if callable(notice.context) else notice.context
        for person_id in people:
            made = Notification(
                person_id=person_id,
                event=notice.event,
                context=context,
                link=notice.link,
                created_at=notice.at,
            )
            session.add(made)
            for channel in CHANNELS:
                pref = prefs.get((person_id, channel))
                if pref is not None and not pref.enabled:
                    continue
                # E-mail goes to the person's address unless they gave another; a webhook
                # only where the person set one up.
                address = (pref.address if pref else "") or (
                    emails.get(person_id, "") if channel == "email" else ""
                )
                if address:
                    session.add(
                        Outbox(
                            notification=made,
                            channel=channel,
                            address=address,
                            next_attempt_at=notice.at,
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
