"""Notifications, written in the transaction that causes them: one in-app notice per person and
one outbox row per other channel the person uses. Sending happens after commit, from the outbox
(notifications.outbox). The context is what the message templates show: names of steps and
units, item numbers, dates — never personal data such as resident ID numbers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .direct import Direct, execute
from .models import (
    ChannelPreference,
    Holding,
    Notification,
    Outbox,
    Person,
    Position,
    PositionKind,
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


# Built once: every new step asks who holds its position (engine.escalation tells them).
_HOLDERS = select(Holding.person_id).where(
    Holding.position_id.in_(bindparam("ids", expanding=True)), Holding.ended_at.is_(None)
)
_HOLDERS_OF_ONE = Direct(
    select(Holding.person_id).where(
        Holding.position_id == bindparam("id"), Holding.ended_at.is_(None)
    )
)


def holders_of(session: Session, position_ids: Iterable[int]) -> list[int]:
    """Who holds these positions now (the people a position's step is meant for)."""
    ids = list(dict.fromkeys(position_ids))
    if len(ids) != 1:  # a meeting's members, say
        return list(session.scalars(_HOLDERS, {"ids": ids})) if ids else []
    session.flush()  # a seat just taken through the ORM counts
    # Every new step asks this for its one position: straight to the driver (engine.direct).
    rows = execute(session.connection(), _HOLDERS_OF_ONE, {"id": ids[0]}).fetchall()
    return [person_id for (person_id,) in rows]


def seat(session: Session, unit_id: int | None, kind: PositionKind) -> int | None:
    if unit_id is None:
        return None
    return session.scalar(
        select(Position.id).where(Position.unit_id == unit_id, Position.kind == kind)
    )


def notify(
    session: Session,
    person_ids: Iterable[int],
    event: str,
    context: dict[str, Any],
    link: str,
    now: datetime,
) -> list[Notification]:
    """One notice per person (each once), and their outbox deliveries."""
    if event not in EVENTS:
        raise ValueError(f"unknown notification event '{event}'")
    people = list(dict.fromkeys(person_ids))
    if not people:
        return []
    emails = dict(
        session.execute(select(Person.id, Person.email).where(Person.id.in_(people))).all()
    )
    prefs: dict[tuple[int, str], ChannelPreference] = {
        (p.person_id, p.channel): p
        for p in session.scalars(
            select(ChannelPreference).where(ChannelPreference.person_id.in_(people))
        )
    }
    made = []
    for person_id in people:
        notice = Notification(
            person_id=person_id, event=event, context=context, link=link, created_at=now
        )
        session.add(notice)
        made.append(notice)
        for channel in CHANNELS:
            pref = prefs.get((person_id, channel))
            if pref is not None and not pref.enabled:
                continue
            # E-mail goes to the person's address unless they gave another; a webhook only
            # where the person set one up.
            address = (pref.address if pref else "") or (
                emails.get(person_id, "") if channel == "email" else ""
            )
            if address:
                session.add(
                    Outbox(
                        notification=notice, channel=channel, address=address, next_attempt_at=now
                    )
                )
    return made


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
