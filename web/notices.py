"""Notifications in the web app: the list with its unread count (the in-app channel), the
person's channel preferences, and the office's manual reminder (催办) on a step."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select, update
from werkzeug.wrappers import Response

from engine.clock import utcnow
from engine.errors import FormError, PermissionDenied
from engine.escalation import remind
from engine.models import ChannelPreference, Notification
from engine.runtime import Actor
from notifications.render import render

from . import get_session
from .auth import current_viewer

bp = Blueprint("notices", __name__)
PAGE = 50


def _person_id() -> int:
    person_id: int = current_user.account.person_id
    return person_id


@bp.get("/notifications")
@login_required
def index() -> str:
    session = get_session()
    notices = list(
        session.scalars(
            select(Notification)
            .where(Notification.person_id == _person_id())
            .order_by(Notification.id.desc())
            .limit(PAGE)
        )
    )
    locale = str(get_locale())
    rendered = [(n, *render(n.event, n.context, locale, n.link)) for n in notices]
    return render_template("notices/index.html", rendered=rendered)


@bp.post("/notifications/read")
@login_required
def mark_read() -> Response:
    session = get_session()
    session.execute(
        update(Notification)
        .where(Notification.person_id == _person_id(), Notification.read_at.is_(None))
        .values(read_at=utcnow())
    )
    session.commit()
    return redirect(url_for("notices.index"))


@bp.get("/notifications/<int:notice_id>")
@login_required
def open_notice(notice_id: int) -> Response:
    """Mark one read and go where it points (links are local paths only)."""
    session = get_session()
    notice = session.get(Notification, notice_id)
    if notice is None or notice.person_id != _person_id():
        abort(404)
    if notice.read_at is None:
        notice.read_at = utcnow()
        session.commit()
    target = (
        notice.link if notice.link.startswith("/") and not notice.link.startswith("//") else "/"
    )
    return redirect(target)


def _preferences() -> dict[str, ChannelPreference]:
    session = get_session()
    return {
        p.channel: p
        for p in session.scalars(
            select(ChannelPreference).where(ChannelPreference.person_id == _person_id())
        )
    }


@bp.route("/notifications/settings", methods=["GET", "POST"])
@login_required
def settings() -> str | tuple[str, int] | Response:
    errors: dict[str, str] = {}
    prefs = _preferences()
    if request.method == "POST":
        session = get_session()
        values = {
            "email": (
                request.form.get("email_address", "").strip(),
                bool(request.form.get("email")),
            ),
            "webhook": (
                request.form.get("webhook_address", "").strip(),
                bool(request.form.get("webhook")),
            ),
        }
        email, _on = values["email"]
        if email and ("@" not in email or len(email) > 300 or any(c.isspace() for c in email)):
            errors["email_address"] = _("Give an e-mail address such as name@example.cn.")
        hook, on = values["webhook"]
        if hook and (not hook.startswith(("http://", "https://")) or len(hook) > 300):
            errors["webhook_address"] = _("Give the webhook as an http(s) address.")
        if on and not hook:
            errors["webhook_address"] = _("Give the webhook address to turn it on.")
        if not errors:
            for channel, (address, enabled) in values.items():
                pref = prefs.get(channel)
                if pref is None:
                    pref = ChannelPreference(person_id=_person_id(), channel=channel)
                    session.add(pref)
                pref.address, pref.enabled = address, enabled
            session.commit()
            flash(_("Your notification settings are saved."), "info")
            return redirect(url_for("notices.settings"))
    shown: dict[str, Any] = {
        "email": prefs["email"].enabled if "email" in prefs else True,
        "email_address": prefs["email"].address if "email" in prefs else "",
        "webhook": prefs["webhook"].enabled if "webhook" in prefs else False,
        "webhook_address": prefs["webhook"].address if "webhook" in prefs else "",
        "person_email": current_user.account.person.email,
    }
    if request.method == "POST":
        shown |= {k: request.form.get(k, "") for k in ("email_address", "webhook_address")}
    page = render_template("notices/settings.html", values=shown, errors=errors)
    return (page, 400) if errors else page


@bp.post("/tasks/<int:task_id>/remind")
@login_required
def remind_step(task_id: int) -> Response:
    """催办: the office of the step's jurisdiction reminds its holders."""
    from .tasks import visible_task

    task = visible_task(task_id)
    viewer = current_viewer()
    office = [s for s in viewer.seats if s.kind.value in ("office_director", "office_staff")]
    if not office or task.instance.jurisdiction_id not in viewer.office_jurisdiction_ids:
        abort(403)
    session = get_session()
    actor = Actor(office[0].position_id, viewer.person_id, current_user.account.person.name)
    try:
        remind(session, task, actor, request.form.get("note", ""), utcnow())
        session.commit()
    except (FormError, PermissionDenied) as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("The reminder was sent."), "info")
    return redirect(url_for("tasks.task_page", task_id=task_id))


def init_app(app: Any) -> None:
    app.register_blueprint(bp)
