"""Sending the outbox: after the transaction that wrote them has committed, each row is sent
once. A failure is recorded and retried with back-off (capped, so a server that was down an
hour gets everything within minutes of its return); a sent row is never sent again."""

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
    """Send what is due, one row per transaction (locked while it is sent, so a second
    scheduler skips it)."""
    result = Delivered()
    for _ in range(limit):
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
                return result
            notice = row.notification
            locale = session.scalar(
                select(Account.locale).where(Account.person_id == notice.person_id)
            )
            link = base_url + notice.link
            subject, body = render(notice.event, notice.context, locale or "zh_CN", link)
            row.attempts += 1
            try:
                channels[row.channel].send(
                    row.address,
                    subject,
                    body,
                    {"event": notice.event, "link": link, "outbox_id": row.id},
                )
            except Exception as exc:  # any failure: keep it for the next attempt
                row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
                row.next_attempt_at = now + backoff(row.attempts)
                result.failed += 1
            else:
                row.sent_at, row.last_error = now, ""
                result.sent += 1
    return result
