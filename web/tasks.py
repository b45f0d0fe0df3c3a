"""The liaison's screens: inbox (待办), done (已办), a step's page with its item, history,
comments, attachments and form."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required
from sqlalchemy import select
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from engine.access import (
    InboxFilter,
    Urgency,
    acting_position,
    can_see_item,
    can_see_task,
    done_list,
    inbox,
)
from engine.clock import local_today, utcnow
from engine.errors import Conflict, FormError, PermissionDenied
from engine.forms import FORMS, validate
from engine.items import AttachmentStore, add_attachment, add_comment, check_upload, load_item
from engine.models import Attachment, HumanTask, Instance, Plan
from engine.runtime import Actor, complete_task

from . import get_session
from .assistance import step_context
from .auth import current_viewer
from .diagram import item_diagram, process_diagram
from .forms import field_label, field_widgets, form_title
from .meetings import step_context as minutes_context

bp = Blueprint("tasks", __name__)
PAGE = 50


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if re.fullmatch(r"[0-9]{1,4}", value) else None


@bp.get("/")
@login_required
def home() -> Response:
    viewer = current_viewer()
    if not viewer.seats and not viewer.is_admin:  # an applicant: their work is the portal
        return redirect(url_for("assistance.portal"))
    return redirect(url_for("tasks.inbox"))


@bp.get("/inbox", endpoint="inbox")
@login_required
def inbox_view() -> str:
    viewer = current_viewer()
    scope = request.args.get("scope", "mine")
    if scope not in ("mine", "unit", "all"):
        scope = "mine"
    light = request.args.get("urgency")
    filters = InboxFilter(
        plan_key=request.args.get("plan") or None,
        urgency=Urgency(light) if light in {u.value for u in Urgency} else None,
        due_within_days=_int_arg("within"),
        scope=scope,
    )
    page = max(_int_arg("page") or 1, 1)
    session = get_session()
    steps, total = inbox(session, viewer, utcnow(), filters, limit=PAGE, offset=(page - 1) * PAGE)
    plans = list(session.scalars(select(Plan).order_by(Plan.id)))
    return render_template(
        "tasks/inbox.html",
        steps=steps,
        total=total,
        page=page,
        pages=max((total + PAGE - 1) // PAGE, 1),
        filters=filters,
        plans=plans,
        viewer=viewer,
    )


@bp.get("/done")
@login_required
def done() -> str:
    return render_template("tasks/done.html", steps=done_list(get_session(), current_viewer()))


def visible_task(task_id: int) -> HumanTask:
    """A step the viewer may see; anyone else learns nothing, not even that it exists."""
    task = get_session().get(HumanTask, task_id)
    if task is None or not can_see_task(get_session(), current_viewer(), task):
        abort(404)
    return task


def _visible_item(root_id: int) -> Instance:
    root = get_session().get(Instance, root_id)
    if root is None or root.parent_id is not None:
        abort(404)
    if not can_see_item(get_session(), current_viewer(), root):
        abort(404)
    return root


def render_task(
    task: HumanTask,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
    revealed: set[str] | None = None,
) -> tuple[str, int]:
    session = get_session()
    root = session.get(Instance, task.instance.root_id)
    assert root is not None
    position_id = acting_position(current_viewer(), task)
    # A step of a medical-assistance application shows the application instead of a list item,
    # a step of a meeting's minutes the minutes.
    application = step_context(task, revealed)
    minutes = None if application else minutes_context(task)
    template = "tasks/task.html"
    if application:
        template = "assistance/step.html"
    elif minutes:
        template = "meetings/step.html"
    return render_template(
        template,
        application_context=application,
        minutes_context=minutes,
        can_remind=task.state.value == "ready"
        and task.position_id is not None
        and task.instance.jurisdiction_id in current_viewer().office_jurisdiction_ids,
        task=task,
        item=(item := load_item(session, root)),
        step_names={s.id: f"{s.name}（{unit_label(s)}）" for s in item.steps},
        unit_label=unit_label,
        can_act=position_id is not None and task.state.value == "ready",
        form=FORMS[task.form],
        form_title=form_title(task.form),
        widgets=field_widgets(FORMS[task.form], values or {}),
        field_label=field_label,
        errors=errors or {},
        diagrams=_diagrams(task, root),
    ), status


def unit_label(step: HumanTask) -> str:
    """Whose step: the unit, or the applicant for an applicant's own step."""
    return step.unit.name if step.unit is not None else _("Applicant")


def _diagrams(task: HumanTask, root: Instance) -> list[str]:
    """The item's diagram, and the unit's own branch when the step is in one."""
    drawings = [item_diagram(get_session(), root)]
    if task.instance.parent_id is not None:
        drawings.append(process_diagram(get_session(), task.instance))
    return [d for d in drawings if d]


@bp.get("/tasks/<int:task_id>")
@login_required
def task_page(task_id: int) -> tuple[str, int]:
    return render_task(visible_task(task_id))


def _uploads() -> list[FileStorage]:
    return [f for f in request.files.getlist("files") if f and f.filename]


@bp.post("/tasks/<int:task_id>")
@login_required
def submit(task_id: int) -> Response | tuple[str, int]:
    task = visible_task(task_id)
    viewer = current_viewer()
    position_id = acting_position(viewer, task)
    if position_id is None:
        abort(403)
    form = FORMS[task.form]
    data = {f.name: request.form.get(f.name, "") for f in form.fields}
    for f in form.fields:
        if f.kind == "bool":
            data[f.name] = "true" if request.form.get(f.name) else "false"
    uploads = [(u.filename or "", u.stream.read()) for u in _uploads()]
    try:
        validate(form, data, local_today(utcnow()))  # report form errors before anything runs
        for name, content in uploads:
            check_upload(name, content)
    except FormError as exc:
        return render_task(task, exc.errors, data, 400)
    session = get_session()
    store: AttachmentStore = current_app.extensions["duban.attachments"]
    root = session.get(Instance, task.instance.root_id)
    assert root is not None
    actor = Actor(position_id, viewer.person_id, current_user.account.person.name)
    try:  # one transaction: the evidence and the step land together or not at all
        for name, content in uploads:
            add_attachment(
                session,
                store,
                root,
                viewer.person_id,
                position_id,
                name,
                io.BytesIO(content),
                utcnow(),
                task,
            )
        complete_task(session, task.id, actor, data, utcnow())
        session.commit()
    except FormError as exc:
        session.rollback()
        return render_task(session.get(HumanTask, task_id) or task, exc.errors, data, 400)
    except Conflict as exc:
        session.rollback()
        flash(_("This step was changed by someone else; nothing was saved.") + f" ({exc})", "error")
        return redirect(url_for("tasks.task_page", task_id=task_id))
    except PermissionDenied:
        session.rollback()
        abort(403)
    flash(_("Submitted."), "info")
    return redirect(url_for("tasks.inbox"))


@bp.post("/tasks/<int:task_id>/comments")
@login_required
def comment(task_id: int) -> Response | tuple[str, int]:
    task = visible_task(task_id)
    viewer = current_viewer()
    position_id = acting_position(viewer, task) or next(
        (s.position_id for s in viewer.seats if s.unit_id == task.unit_id),
        viewer.seats[0].position_id if viewer.seats else None,
    )
    if position_id is None:
        abort(403)
    session = get_session()
    root = session.get(Instance, task.instance.root_id)
    assert root is not None
    try:
        add_comment(
            session,
            root,
            viewer.person_id,
            position_id,
            request.form.get("body", ""),
            utcnow(),
            task,
        )
        session.commit()
    except FormError as exc:
        session.rollback()
        return render_task(task, {"comment": exc.errors["body"]}, status=400)
    return redirect(url_for("tasks.task_page", task_id=task_id) + "#comments")


@bp.get("/attachments/<int:attachment_id>")
@login_required
def download(attachment_id: int) -> Response:
    session = get_session()
    attachment = session.get(Attachment, attachment_id)
    if attachment is None:
        abort(404)
    _visible_item(attachment.instance_id)
    store: AttachmentStore = current_app.extensions["duban.attachments"]
    path = store.path(attachment.sha256)
    if not path.exists():
        abort(410)
    response = send_file(
        path,
        mimetype=attachment.content_type,
        as_attachment=True,
        download_name=attachment.filename,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
