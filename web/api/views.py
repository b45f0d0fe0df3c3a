"""The endpoints. Each reuses the engine calls and rules of the HTML screens (web/tasks.py)."""

from __future__ import annotations

import re
from typing import Any, BinaryIO, cast

from flask import current_app, request, send_file
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import BadRequest, Conflict, Gone, NotFound, UnsupportedMediaType
from werkzeug.wrappers import Response

from engine import errors
from engine.access import InboxFilter, Urgency, acting_position, done_list, inbox_rows
from engine.clock import utcnow
from engine.directory import positions_of
from engine.forms import FORMS
from engine.items import AttachmentStore, add_attachment, add_comment, load_item
from engine.models import Account, Attachment, HumanTask, Instance, Jurisdiction, Plan, PlanTask
from engine.runtime import Actor, complete_task
from web import get_session

from . import serialize
from .common import (
    MAX_ID,
    bp,
    caller,
    forbidden,
    json_body,
    json_response,
    viewer,
    visible_item,
    visible_task,
)
from .errors import form_errors
from .openapi import document

PAGE = 50
MAX_PAGE = 10_000
_DIGITS = re.compile(r"[0-9]{1,5}")


@bp.get("/openapi.json", endpoint="openapi")
def openapi() -> Response:
    return json_response(document())


@bp.get("/me")
def me() -> Response:
    session = get_session()
    account = session.get(Account, caller().account_id)
    assert account is not None
    offices = session.scalars(
        select(Jurisdiction)
        .where(Jurisdiction.id.in_(viewer().office_jurisdiction_ids))
        .order_by(Jurisdiction.id)
    )
    positions = sorted(positions_of(session, account.person_id), key=lambda p: p.id)
    return json_response(serialize.me(account, positions, list(offices)))


def _number_arg(name: str, highest: int) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if not _DIGITS.fullmatch(value) or int(value) > highest:
        raise BadRequest(f"'{name}' must be a whole number from 0 to {highest}")
    return int(value)


def _choice_arg(name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    value = request.args.get(name) or default
    if value is not None and value not in choices:
        raise BadRequest(f"'{name}' must be one of {', '.join(choices)}")
    return value


def _inbox_filter() -> InboxFilter:
    plan = request.args.get("plan") or None
    if plan is not None and (len(plan) > 64 or "\x00" in plan):
        raise BadRequest("'plan' must be a plan key (at most 64 characters)")
    light = _choice_arg("urgency", tuple(u.value for u in Urgency), None)
    return InboxFilter(
        plan_key=plan,
        urgency=Urgency(light) if light else None,
        due_within_days=_number_arg("within", 9999),
        scope=_choice_arg("scope", ("mine", "unit", "all"), "mine") or "mine",
    )


@bp.get("/inbox")
def inbox_view() -> Response:
    filters = _inbox_filter()
    page = max(_number_arg("page", MAX_PAGE) or 1, 1)
    session, now = get_session(), utcnow()
    # Rows, not objects: the step, its seat and its item in one statement.
    found, total = inbox_rows(session, viewer(), now, filters, limit=PAGE, offset=(page - 1) * PAGE)
    return json_response(
        {
            "steps": [serialize.step_row(row, now) for row in found],
            "total": total,
            "page": page,
            "pages": max((total + PAGE - 1) // PAGE, 1),
            "per_page": PAGE,
        }
    )


@bp.get("/done")
def done() -> Response:
    session = get_session()
    return json_response(
        {"steps": serialize.steps(session, done_list(session, viewer()), utcnow())}
    )


def _task_detail(task: HumanTask) -> dict[str, Any]:
    session, now = get_session(), utcnow()
    (data,) = serialize.steps(session, [task], now)
    can_act = acting_position(viewer(), task) is not None and task.state.value == "ready"
    return {
        "step": data,
        "can_act": can_act,
        "form": serialize.form(FORMS[task.form], caller()),
        "form_data": task.form_data,
    }


@bp.get("/tasks/<int:task_id>")
def task(task_id: int) -> Response:
    return json_response(_task_detail(visible_task(task_id)))


@bp.post("/tasks/<int:task_id>/complete")
def complete(task_id: int) -> Response:
    task = visible_task(task_id)
    position_id = acting_position(viewer(), task)
    if position_id is None:
        raise forbidden(task, "complete it")
    data = json_body({"data"}, {"data"})["data"]
    if not isinstance(data, dict):
        raise BadRequest("'data' must be a JSON object of the form's fields")
    who = caller()
    actor = Actor(position_id, who.person_id, who.name)
    session = get_session()
    try:  # one transaction: the step and everything it sets off land together or not at all
        complete_task(session, task.id, actor, data, utcnow())
        session.commit()
    except errors.FormError as exc:
        session.rollback()
        return form_errors(exc)
    except errors.Conflict as exc:
        session.rollback()
        raise Conflict(str(exc)) from None
    except errors.PermissionDenied:
        session.rollback()
        raise forbidden(task, "complete it") from None
    except BaseException:
        session.rollback()
        raise
    return json_response(_task_detail(task))


def _commenting_position(task: HumanTask) -> int | None:
    """As on the step's page: the acting position, else a seat in the step's unit, else any."""
    seats = viewer().seats
    return acting_position(viewer(), task) or next(
        (s.position_id for s in seats if s.unit_id == task.unit_id),
        seats[0].position_id if seats else None,
    )


def _root(task: HumanTask) -> Instance:
    root = get_session().get(Instance, task.instance.root_id)
    assert root is not None
    return root


@bp.post("/tasks/<int:task_id>/comments")
def comment(task_id: int) -> Response:
    task = visible_task(task_id)
    position_id = _commenting_position(task)
    if position_id is None:
        raise forbidden(task, "comment on it")
    body = json_body({"body"}, {"body"})["body"]
    if not isinstance(body, str):
        raise BadRequest("'body' must be a string")
    session = get_session()
    try:
        row = add_comment(
            session, _root(task), viewer().person_id, position_id, body, utcnow(), task
        )
        session.commit()
    except errors.FormError as exc:
        session.rollback()
        return form_errors(exc)
    people = serialize.People(session, {row.person_id}, {row.position_id})
    return json_response(serialize.comment(row, people), 201)


def _upload() -> FileStorage:
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("send the file as multipart/form-data, in the part 'file'")
    upload = request.files.get("file")  # a body over MAX_CONTENT_LENGTH stops here with 413
    if upload is None or not upload.filename:
        raise BadRequest("a file is required in the multipart part 'file'")
    return upload


@bp.post("/tasks/<int:task_id>/attachments")
def attach(task_id: int) -> Response:
    """Evidence for an open step, from whoever may complete it (as the step's own form)."""
    task = visible_task(task_id)
    position_id = acting_position(viewer(), task)
    if position_id is None:
        raise forbidden(task, "add evidence to it")
    if task.state.value != "ready":
        raise Conflict(f"step {task.id} ({task.name}) is already {task.state.value}")
    upload = _upload()
    session = get_session()
    store: AttachmentStore = current_app.extensions["duban.attachments"]
    try:
        row = add_attachment(
            session,
            store,
            _root(task),
            viewer().person_id,
            position_id,
            upload.filename or "",
            cast(BinaryIO, upload.stream),
            utcnow(),
            task,
        )
        session.commit()
    except errors.FormError as exc:
        session.rollback()
        return form_errors(exc)
    people = serialize.People(session, {row.uploaded_by_id}, {row.position_id})
    return json_response(serialize.attachment(row, people), 201)


@bp.get("/attachments/<int:attachment_id>")
def download(attachment_id: int) -> Response:
    session = get_session()
    row = session.get(Attachment, attachment_id) if 0 < attachment_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"no attachment {attachment_id}")
    try:
        visible_item(row.instance_id)
    except NotFound:
        raise NotFound(f"no attachment {attachment_id}") from None
    store: AttachmentStore = current_app.extensions["duban.attachments"]
    path = store.path(row.sha256)
    if not path.exists():
        raise Gone(f"the file of attachment {attachment_id} is no longer stored")
    response = send_file(
        path,
        mimetype=row.content_type,
        as_attachment=True,
        download_name=row.filename,
        conditional=False,
        etag=False,
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/items/<int:root_id>")
def item(root_id: int) -> Response:
    session = get_session()
    loaded = load_item(session, visible_item(root_id))
    return json_response(serialize.item(session, loaded, utcnow()))


@bp.get("/plans")
def plans() -> Response:
    session = get_session()
    counts = dict(
        session.execute(select(PlanTask.plan_id, func.count()).group_by(PlanTask.plan_id)).all()
    )
    rows = session.scalars(select(Plan).order_by(Plan.id))
    return json_response({"plans": [serialize.plan(p, counts.get(p.id, 0)) for p in rows]})
