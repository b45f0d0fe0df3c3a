"""What every page shares: filters for local time and urgency, the inbox count in the header."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask
from flask_babel import get_locale
from flask_login import current_user

from engine.access import Urgency, inbox, urgency
from engine.assistance import news_count
from engine.clock import LOCAL_TZ, as_utc, utcnow
from engine.notify import unread_count

from . import get_session


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Stored in UTC, shown in Asia/Shanghai."""
    return as_utc(value).astimezone(LOCAL_TZ).strftime(fmt) if value else ""


def local_date(value: datetime | None) -> str:
    return local_time(value, "%Y-%m-%d")


def init_app(app: Flask) -> None:
    app.add_template_filter(local_time, "local_time")
    app.add_template_filter(local_date, "local_date")

    @app.template_filter("urgency")
    def _urgency(due_at: datetime | None) -> str:
        return urgency(due_at, utcnow()).value

    @app.context_processor
    def _shared() -> dict[str, Any]:
        from .auth import current_viewer

        shared: dict[str, Any] = {
            "Urgency": Urgency,
            "has_admin": "admin" in app.blueprints,
            "locale": str(get_locale()),
        }
        if current_user.is_authenticated:
            viewer = current_viewer()
            # Applicants hold no position: their screens are the portal's, not the inbox.
            shared["is_staff"] = bool(viewer.seats) or viewer.is_admin
            shared["show_dashboard"] = viewer.is_office or bool(viewer.head_unit_ids)
            if shared["is_staff"]:
                _, shared["inbox_count"] = inbox(get_session(), viewer, utcnow(), limit=0)
            else:
                shared["news_count"] = news_count(get_session(), viewer.account_id)
            shared["unread_count"] = unread_count(get_session(), viewer.person_id)
        return shared
