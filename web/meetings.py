"""The joint meeting on the web: meetings, attendance, the minutes and their agreed items, the
printable minutes, the agreed-items progress report and the membership on any date. The
office of a jurisdiction runs all of it; members see the meetings they sit in, and review and
sign through their steps (the task pages)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from engine import meetings
from engine.clock import local_today, parse_day, utcnow
from engine.errors import Conflict, FormError
from engine.models import (
    Attendance,
    HumanTask,
    Instance,
    Jurisdiction,
    Meeting,
    MeetingKind,
    Minutes,
    MinutesStatus,
    PositionKind,
    TaskState,
    Unit,
)
from engine.runtime import Actor

from . import form_int, get_session
from .auth import current_viewer

bp = Blueprint("meetings", __name__, url_prefix="/meetings")
BLANK_ROWS = 3
MINUTES_STATUS = {
    MinutesStatus.DRAFT: _l("Being drafted or revised by the office"),
    MinutesStatus.SIGNING: _l("With the convener for signature"),
    MinutesStatus.SIGNED: _l("Signed and issued"),
    MinutesStatus.SUPERSEDED: _l("Superseded by a correction"),
}
ATTENDANCE = {
    Attendance.EXPECTED: _l("Expected"),
    Attendance.PRESENT: _l("Present"),
    Attendance.DELEGATE: _l("Sent a delegate"),
    Attendance.ABSENT: _l("Absent"),
}
KINDS = {
    MeetingKind.PLENARY: _l("Plenary meeting (全体会议)"),
    MeetingKind.THEMATIC: _l("Thematic meeting (专题会议)"),
}
PROGRESS = {
    "closed": _l("Closed"),
    "open": _l("In progress"),
    "overdue": _l("Overdue"),
    "not_routed": _l("Not routed"),
}
SEAT_LABELS = {
    PositionKind.CONVENER: _l("Convener"),
    PositionKind.DEPUTY_CONVENER: _l("Deputy convener"),
    PositionKind.MEMBER: _l("Member"),
    PositionKind.OFFICE_DIRECTOR: _l("Office director"),
    PositionKind.LIAISON: _l("Liaison"),
}


def _labels() -> dict[str, Any]:
    return {
        "minutes_status": {k.value: str(v) for k, v in MINUTES_STATUS.items()},
        "attendance_labels": {k.value: str(v) for k, v in ATTENDANCE.items()},
        "kind_labels": {k.value: str(v) for k, v in KINDS.items()},
        "progress_labels": PROGRESS,
        "seat_labels": {k.value: str(v) for k, v in SEAT_LABELS.items()},
    }


def _office_jurisdictions() -> list[Jurisdiction]:
    ids = current_viewer().office_jurisdiction_ids
    if not ids:
        return []
    return list(get_session().scalars(select(Jurisdiction).where(Jurisdiction.id.in_(ids))))


def _is_office(meeting: Meeting) -> bool:
    return meeting.jurisdiction_id in current_viewer().office_jurisdiction_ids


def _visible(meeting_id: int) -> Meeting:
    """The office's meetings and the ones the viewer sits in; anything else does not exist."""
    meeting = get_session().get(Meeting, meeting_id)
    if meeting is None:
        abort(404)
    seats = current_viewer().position_ids
    if not _is_office(meeting) and not any(p.position_id in seats for p in meeting.participants):
        abort(404)
    return meeting


def _office_only(meeting_id: int) -> Meeting:
    meeting = _visible(meeting_id)
    if not _is_office(meeting):
        abort(403)
    return meeting


def _actor() -> Actor:
    viewer = current_viewer()
    office = next(
        (
            s.position_id
            for s in viewer.seats
            if s.kind in (PositionKind.OFFICE_STAFF, PositionKind.OFFICE_DIRECTOR)
        ),
        None,
    )
    return Actor(office, viewer.person_id, current_user.account.person.name)


@bp.get("")
@login_required
def index() -> str:
    session, viewer = get_session(), current_viewer()
    today = local_today(utcnow())
    offices = _office_jurisdictions()
    return render_template(
        "meetings/index.html",
        meetings=meetings.visible_meetings(
            session, viewer.office_jurisdiction_ids, viewer.position_ids
        ),
        rules=[(j, meetings.yearly_rule(session, j, today)) for j in offices],
        offices=offices,
        **_labels(),
    )


def _jurisdiction_arg(offices: list[Jurisdiction]) -> Jurisdiction:
    code = request.values.get("jurisdiction") or (offices[0].code if offices else "")
    found = next((j for j in offices if j.code == code), None)
    if found is None:
        abort(403 if not offices else 404)
    return found


def _meeting_form(
    jurisdiction: Jurisdiction, values: dict[str, Any], errors: dict[str, str], status: int = 200
) -> tuple[str, int]:
    session = get_session()
    seats = [
        s
        for s in meetings.membership(session, jurisdiction, local_today(utcnow()))
        if s.position.kind in meetings.MEMBER_KINDS
    ]
    return render_template(
        "meetings/new.html",
        jurisdiction=jurisdiction,
        seats=seats,
        values=values,
        errors=errors,
        **_labels(),
    ), status


@bp.get("/new")
@login_required
def new() -> tuple[str, int]:
    jurisdiction = _jurisdiction_arg(_office_jurisdictions())
    today = local_today(utcnow()).isoformat()
    return _meeting_form(
        jurisdiction, {"kind": "plenary", "held_on": today, "comprehensive": True}, {}
    )


def _ids(name: str) -> list[int]:
    return [n for v in request.form.getlist(name) if (n := form_int(v)) is not None]


@bp.post("/new")
@login_required
def create() -> Response | tuple[str, int]:
    jurisdiction = _jurisdiction_arg(_office_jurisdictions())
    form = request.form
    values: dict[str, Any] = dict(form.items())
    values["members"] = _ids("members")
    errors: dict[str, str] = {}
    try:
        held_on = parse_day(form.get("held_on", ""))
    except ValueError:
        errors["held_on"] = _("Give the date as YYYY-MM-DD.")
    kind = form.get("kind", "")
    if kind not in {k.value for k in MeetingKind}:
        errors["kind"] = _("Choose plenary or thematic.")
    chair = form.get("chair", "")
    if errors:
        return _meeting_form(jurisdiction, values, errors, 400)
    session = get_session()
    try:
        meeting = meetings.create_meeting(
            session,
            jurisdiction,
            meetings.MeetingDraft(
                MeetingKind(kind),
                form.get("title", ""),
                held_on,
                place=form.get("place", ""),
                agenda=form.get("agenda", ""),
                comprehensive=bool(form.get("comprehensive")),
                chair_position_id=form_int(chair),
                member_position_ids=values["members"],
                invited=[line for line in form.get("invited", "").splitlines() if line.strip()],
            ),
            utcnow(),
        )
        session.commit()
    except FormError as exc:
        session.rollback()
        return _meeting_form(jurisdiction, values, exc.errors, 400)
    flash(_("The meeting was called."), "info")
    return redirect(url_for("meetings.detail", meeting_id=meeting.id))


def _units(jurisdiction_id: int) -> list[Unit]:
    return list(
        get_session().scalars(
            select(Unit)
            .where(Unit.jurisdiction_id == jurisdiction_id)
            .order_by(Unit.member.desc(), Unit.id)
        )
    )


def _render_detail(
    meeting: Meeting,
    errors: dict[str, str] | None = None,
    minutes_values: dict[str, Any] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    session = get_session()
    current = meetings.current_minutes(meeting)
    editable = (
        _is_office(meeting)
        and current is not None
        and current.status == MinutesStatus.DRAFT
        and meetings.office_step(session, current) is not None
    )
    reviews = _reviews(current) if current is not None else []
    return render_template(
        "meetings/detail.html",
        meeting=meeting,
        is_office=_is_office(meeting),
        current=current,
        editable=editable,
        reviews=reviews,
        units=_units(meeting.jurisdiction_id),
        unit_names={u.id: u.name for u in _units(meeting.jurisdiction_id)},
        minutes_values=minutes_values
        or (_minutes_values(current) if current else _blank_minutes()),
        progress=meetings.agreed_item_progress(
            session, meeting.jurisdiction, local_today(utcnow()), meeting
        ),
        open_steps=_open_steps(current),
        errors=errors or {},
        **_labels(),
    ), status


def _open_steps(minutes: Minutes | None) -> list[HumanTask]:
    if minutes is None or minutes.instance_id is None:
        return []
    return list(
        get_session().scalars(
            select(HumanTask)
            .where(HumanTask.instance_id == minutes.instance_id, HumanTask.state == TaskState.READY)
            .order_by(HumanTask.id)
        )
    )


def _reviews(minutes: Minutes) -> list[HumanTask]:
    """The members' reviews and the signer's returns: what the office revises against."""
    if minutes.instance_id is None:
        return []
    return list(
        get_session().scalars(
            select(HumanTask)
            .where(
                HumanTask.instance_id == minutes.instance_id,
                HumanTask.element_id.in_(("member_review", "sign_minutes")),
                HumanTask.state == TaskState.COMPLETED,
            )
            .order_by(HumanTask.completed_at, HumanTask.id)
        )
    )


def _blank_minutes() -> dict[str, Any]:
    return {"number": "", "body": "", "items": [{} for _ in range(BLANK_ROWS)], "revision": ""}


def _minutes_values(minutes: Minutes) -> dict[str, Any]:
    items = [
        {
            "number": i.number,
            "text": i.text,
            "lead": i.lead_unit_id,
            "support": list(i.support_unit_ids),
            "due": i.due_on.isoformat(),
        }
        for i in minutes.items
    ]
    return {
        "number": minutes.number,
        "body": minutes.body,
        "items": items + [{} for _ in range(BLANK_ROWS)],
        "revision": minutes.revision,
    }


@bp.get("/<int:meeting_id>")
@login_required
def detail(meeting_id: int) -> tuple[str, int]:
    return _render_detail(_visible(meeting_id))


@bp.post("/<int:meeting_id>/attendance")
@login_required
def attendance(meeting_id: int) -> Response:
    meeting = _office_only(meeting_id)
    marks: dict[int, tuple[Attendance, str]] = {}
    for p in meeting.participants:
        value = request.form.get(f"attendance-{p.id}", "")
        if value in {a.value for a in Attendance}:
            marks[p.id] = (Attendance(value), request.form.get(f"delegate-{p.id}", ""))
    session = get_session()
    revision = request.form.get("revision", "")
    try:
        meetings.record_attendance(session, meeting, marks, form_int(revision))
        session.commit()
    except (Conflict, FormError) as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("Attendance saved."), "info")
    return redirect(url_for("meetings.detail", meeting_id=meeting_id))


def _minutes_draft() -> tuple[meetings.MinutesDraft, dict[str, Any], dict[str, str]]:
    """The posted minutes: number, body and rows item-N-*; empty rows are skipped."""
    form = request.form
    errors: dict[str, str] = {}
    items: list[meetings.ItemDraft] = []
    rows: list[dict[str, Any]] = []
    indexes = sorted(
        {int(m.group(1)) for k in form for m in [re.fullmatch(r"item-(\d{1,3})-text", k)] if m}
    )
    for i in indexes:
        number_text = form.get(f"item-{i}-number", "")
        text = form.get(f"item-{i}-text", "")
        lead = form.get(f"item-{i}-lead", "")
        support = [n for v in form.getlist(f"item-{i}-support") if (n := form_int(v)) is not None]
        due_text = form.get(f"item-{i}-due", "")
        rows.append(
            {"number": number_text, "text": text, "lead": lead, "support": support, "due": due_text}
        )
        if not text.strip():
            continue
        where = f"item {number_text or i + 1}"
        try:
            number = form_int(number_text, 9999) if number_text else len(items) + 1
            due = parse_day(due_text)
            if number is None:
                raise ValueError(number_text)
        except ValueError:
            errors[f"{where} due"] = _(
                "Give the number as a whole number and the date as YYYY-MM-DD."
            )
            continue
        lead_id = form_int(lead)
        if lead_id is None:
            errors[f"{where} lead"] = _("Choose the lead unit.")
            continue
        items.append(meetings.ItemDraft(number, text, lead_id, tuple(support), due))
    doc_number, body = form.get("number", ""), form.get("body", "")
    values = {
        "number": doc_number,
        "body": body,
        "items": rows + [{} for _ in range(BLANK_ROWS)],
        "revision": form.get("revision", ""),
    }
    return meetings.MinutesDraft(doc_number, body, items), values, errors


def _save_minutes(
    meeting: Meeting, save: Callable[[Session, meetings.MinutesDraft], object], saved: str
) -> Response | tuple[str, int]:
    """Check the posted minutes, save them in one transaction, or show what is wrong."""
    draft, values, errors = _minutes_draft()
    if errors:
        return _render_detail(meeting, errors, values, 400)
    session = get_session()
    try:
        save(session, draft)
        session.commit()
    except FormError as exc:
        session.rollback()
        return _render_detail(meeting, exc.errors, values, 400)
    except Conflict as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(saved, "info")
    return redirect(url_for("meetings.detail", meeting_id=meeting.id))


@bp.post("/<int:meeting_id>/minutes")
@login_required
def start_minutes(meeting_id: int) -> Response | tuple[str, int]:
    meeting = _office_only(meeting_id)
    return _save_minutes(
        meeting,
        lambda session, draft: meetings.start_minutes(session, meeting, draft, _actor(), utcnow()),
        _("The draft minutes are saved; send them for review from the office's step."),
    )


def _minutes_of(meeting: Meeting, minutes_id: int) -> Minutes:
    minutes = get_session().get(Minutes, minutes_id)
    if minutes is None or minutes.meeting_id != meeting.id:
        abort(404)
    return minutes


@bp.post("/<int:meeting_id>/minutes/<int:minutes_id>")
@login_required
def edit_minutes(meeting_id: int, minutes_id: int) -> Response | tuple[str, int]:
    meeting = _office_only(meeting_id)
    minutes = _minutes_of(meeting, minutes_id)
    revision = request.form.get("revision", "")
    return _save_minutes(
        meeting,
        lambda session, draft: meetings.edit_minutes(
            session, minutes, draft, -1 if (r := form_int(revision)) is None else r, utcnow()
        ),
        _("The minutes are saved."),
    )


@bp.post("/<int:meeting_id>/minutes/<int:minutes_id>/correct")
@login_required
def correct(meeting_id: int, minutes_id: int) -> Response:
    meeting = _office_only(meeting_id)
    minutes = _minutes_of(meeting, minutes_id)
    session = get_session()
    try:
        meetings.correct_minutes(
            session, minutes, request.form.get("reason", ""), _actor(), utcnow()
        )
        session.commit()
    except (Conflict, FormError) as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(
            _("A corrected version was started; it goes through review and signature again."),
            "info",
        )
    return redirect(url_for("meetings.detail", meeting_id=meeting_id))


@bp.get("/<int:meeting_id>/minutes/<int:minutes_id>/print")
@login_required
def print_minutes(meeting_id: int, minutes_id: int) -> str:
    """The minutes in the official layout: a page to print or save as PDF."""
    meeting = _visible(meeting_id)
    minutes = _minutes_of(meeting, minutes_id)
    present: list[str] = []
    absent: list[str] = []
    for p in meeting.participants:
        name = p.position.unit.name if p.position else p.invited
        if p.delegate:
            name = f"{name}（{p.delegate}）"
        target = absent if p.attendance == Attendance.ABSENT else present
        if name not in target:  # a unit holding two seats is named once
            target.append(name)
    return render_template(
        "meetings/print.html",
        meeting=meeting,
        minutes=minutes,
        present=present,
        absent=absent,
        unit_names={u.id: u.name for u in _units(meeting.jurisdiction_id)},
        **_labels(),
    )


@bp.get("/report")
@login_required
def report() -> str:
    """The agreed items of every signed minutes and where they stand: for the next meeting."""
    jurisdiction = _jurisdiction_arg(_office_jurisdictions())
    today = local_today(utcnow())
    rows = meetings.agreed_item_progress(get_session(), jurisdiction, today)
    return render_template(
        "meetings/report.html", jurisdiction=jurisdiction, rows=rows, today=today, **_labels()
    )


@bp.get("/members")
@login_required
def members() -> str | tuple[str, int]:
    """Who held each seat of the joint meeting on a date (today by default)."""
    viewer = current_viewer()
    session = get_session()
    offices = _office_jurisdictions()
    if not offices:
        seat_units = {s.unit_id for s in viewer.seats}
        offices = list(
            session.scalars(
                select(Jurisdiction)
                .join(Unit, Unit.jurisdiction_id == Jurisdiction.id)
                .where(Unit.id.in_(seat_units))
                .distinct()
            )
        )
    jurisdiction = _jurisdiction_arg(offices)
    raw = request.args.get("on", "")
    try:
        on = parse_day(raw) if raw.strip() else local_today(utcnow())
    except ValueError:
        flash(_("Give the date as YYYY-MM-DD."), "error")
        on = local_today(utcnow())
    seats = meetings.membership(session, jurisdiction, on)
    return render_template(
        "meetings/members.html", jurisdiction=jurisdiction, seats=seats, on=on, **_labels()
    )


# --- a step of the minutes' process ------------------------------------------------------------


def step_context(task: HumanTask) -> dict[str, Any] | None:
    """What the task page adds for a review / revise / sign step: the minutes themselves."""
    session = get_session()
    root = session.get(Instance, task.instance.root_id)
    if root is None or root.process_id != meetings.PROCESS_ID:
        return None
    minutes = session.scalar(select(Minutes).where(Minutes.instance_id == root.id))
    if minutes is None:
        return None
    return {
        "minutes": minutes,
        "meeting": minutes.meeting,
        "reviews": _reviews(minutes),
        "unit_names": {u.id: u.name for u in _units(minutes.meeting.jurisdiction_id)},
        **_labels(),
    }


def init_app(app: Any) -> None:
    app.register_blueprint(bp)
