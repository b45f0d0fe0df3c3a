"""Sending the outbox: after the transaction that wrote them has committed, each row is sent
once. A failure is recorded and retried with back-off (capped, so a server that was down an
hour gets everything within minutes of its return); a sent row is never sent again. Only a
sender killed between the mail server's acceptance and the record of it can send twice (after
the lease): the message id stays the same, so the receiving side can tell."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.models import Account, Outbox

from .channels import Channel
from .render import render

MAX_BACKOFF = timedelta(minutes=5)
MAX_ATTEMPTS = 2000  # at the cap, about a week of trying


def backoff(attempts: int) -> timedelta:
    return min(timedelta(seconds=15 * 2 ** min(attempts, 16)), MAX_BACKOFF)


@dataclass
class Delivered:
    sent: int = 0
    failed: int = 0


def deliver(
    factory: sessionmaker[Session],
    channels: dict[str, Channel],
    now: datetime,
    limit: int = 1000,
    base_url: str = "",
) -> Delivered:
    """Send what is due. Each row is claimed in a short transaction (its next attempt moved a
    lease ahead, so another scheduler leaves it alone), sent with no transaction open (a slow
    mail server never holds the database), then marked sent or scheduled for a retry."""
    result = Delivered()
    for _ in range(limit):
        claimed = _claim(factory, channels, now, base_url)
        if claimed is None:
            return result
        row_id, channel, address, subject, body, payload = claimed
        try:
            channels[channel].send(address, subject, body, payload)
            error = ""
        except Exception as exc:  # any failure: keep the row for the next attempt
            error = f"{type(exc).__name__}: {exc}"[:1000]
        with factory.begin() as session:
            row = session.get(Outbox, row_id)
            assert row is not None
            if error:
                row.last_error, row.next_attempt_at = error, now + backoff(row.attempts)
                result.failed += 1
            else:
                row.sent_at, row.last_error = now, ""
                result.sent += 1
    return result


LEASE = timedelta(minutes=10)  # a sender that died mid-send is retried after this


def _claim(
    factory: sessionmaker[Session], channels: dict[str, Channel], now: datetime, base_url: str
) -> tuple[int, str, str, str, str, dict[str, object]] | None:
    with factory.begin() as session:
        row = session.scalars(
            select(Outbox)
            .where(
                Outbox.sent_at.is_(None),
                Outbox.next_attempt_at <= now,
                Outbox.attempts < MAX_ATTEMPTS,
                Outbox.channel.in_(list(channels)),
            )
            .order_by(Outbox.next_attempt_at, Outbox.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        notice = row.notification
        locale = session.scalar(select(Account.locale).where(Account.person_id == notice.person_id))
        link = base_url + notice.link
        subject, body = render(notice.event, notice.context, locale or "zh_CN", link)
        row.attempts += 1
        row.next_attempt_at = now + LEASE
        payload: dict[str, object] = {"event": notice.event, "link": link, "outbox_id": row.id}
        return row.id, row.channel, row.address, subject, body, payload
