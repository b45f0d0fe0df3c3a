"""Special-family medical assistance on the web: the applicant's portal (申请), and the page a
bureau sees for its step of an application. Personal data is masked unless the step's holder
asks to see it (a POST, recorded in the history, never a URL)."""

from __future__ import annotations

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
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from engine import assistance
from engine.access import acting_position
from engine.clock import utcnow
from engine.errors import Conflict, FormError, PermissionDenied
from engine.items import AttachmentStore, check_upload
from engine.models import (
    Application,
    ApplicationFile,
    ApplicationStatus,
    HumanTask,
    Instance,
)
from engine.runtime import Actor, record

from . import form_int, get_session
from .auth import current_viewer

bp = Blueprint("assistance", __name__)

STATUS_LABELS = {
    ApplicationStatus.DRAFT: _l("Draft, not submitted"),
    ApplicationStatus.IN_REVIEW: _l("Being reviewed"),
    ApplicationStatus.DOCUMENTS_REQUESTED: _l("More documents needed from you"),
    ApplicationStatus.APPROVED: _l("Approved"),
    ApplicationStatus.REJECTED: _l("Not granted"),
    ApplicationStatus.NOT_ELIGIBLE: _l("Household not confirmed"),
    ApplicationStatus.REDIRECTED: _l("Apply through 低保 / 特困 medical aid instead"),
    ApplicationStatus.WITHDRAWN: _l("Withdrawn"),
}
# What each step of the process is called on the applicant's timeline.
STEP_LABELS = {
    "confirm_family": _l("The health bureau checked your special-family status"),
    "confirm_civil": _l("Civil affairs checked for a near-low-income household (低保边缘)"),
    "confirm_rural": _l("Rural revitalisation checked for a risk of poverty (返贫致贫风险)"),
    "verify_insurance": _l("Medical insurance checked the reimbursed amounts"),
    "approve_aid": _l("The reviewer decided on the aid"),
}
DECISION_LABELS = {
    "confirm": _l("confirmed"),
    "not_confirmed": _l("not confirmed"),
    "covered": _l("found the family already on 低保 / 特困"),
    "documents": _l("asked you for more documents"),
    "reject": _l("rejected the application"),
    "verified": _l("verified"),
    "approve": _l("approved"),
}
FIELD_LABELS = {
    "jurisdiction": _l("Where you apply"),
    "applicant_name": _l("Your name"),
    "resident_id": _l("Resident ID number (18 digits)"),
    "phone": _l("Phone"),
    "address": _l("Address (township, village)"),
    "family_kind": _l("Special family"),
    "relationship": _l("You are"),
    "existing_support": _l("Does the family already receive 低保 or 特困 support?"),
    "hospital": _l("Hospital"),
    "diagnosis": _l("Diagnosis (optional)"),
    "admitted_on": _l("Admitted on"),
    "discharged_on": _l("Discharged on"),
    "total_cost": _l("Total hospital cost (yuan)"),
    "basic_reimbursed": _l("Paid by basic medical insurance (yuan)"),
    "critical_reimbursed": _l("Paid by critical-illness insurance (yuan)"),
    "remaining": _l("Left to pay (yuan)"),
    "files": _l("Settlement documents"),
    "file": _l("File"),
    "note": _l("Note"),
}
CHOICES = {
    "family_kind": (
        ("child_deceased", _l("The only child died (独生子女死亡)")),
        ("child_disabled", _l("The only child is disabled (独生子女伤残)")),
    ),
    "relationship": (
        ("parent", _l("A parent of the only child")),
        ("child_self", _l("The disabled only child")),
    ),
    "existing_support": (
        ("none", _l("No")),
        ("dibao", _l("Yes, 低保 (minimum living allowance)")),
        ("tekun", _l("Yes, 特困供养 (support for the extremely poor)")),
    ),
}
CONFIRMATION_LABELS = {
    "near_low_income": _l("near-low-income household (低保边缘家庭), confirmed by civil affairs"),
    "poverty_risk": _l("risk of poverty (返贫致贫风险), confirmed by rural revitalisation"),
}


def _store() -> AttachmentStore:
    store: AttachmentStore = current_app.extensions["duban.attachments"]
    return store


def _own(application_id: int) -> Application:
    """The signed-in applicant's application; anyone else's does not exist for them."""
    application = get_session().get(Application, application_id)
    if application is None or application.account_id != current_user.account.id:
        abort(404)
    return application


def _labels() -> dict[str, Any]:
    return {
        "field_labels": {k: str(v) for k, v in FIELD_LABELS.items()},
        "status_labels": {k.value: str(v) for k, v in STATUS_LABELS.items()},
        "step_labels": {k: str(v) for k, v in STEP_LABELS.items()},
        "decision_labels": {k: str(v) for k, v in DECISION_LABELS.items()},
        "confirmation_labels": {k: str(v) for k, v in CONFIRMATION_LABELS.items()},
        "choices": CHOICES,
    }


# --- the applicant's portal --------------------------------------------------------------------


@bp.get("/apply")
@login_required
def portal() -> str:
    session = get_session()
    return render_template(
        "assistance/portal.html",
        applications=assistance.applications_of(session, current_user.account.id),
        has_news=assistance.has_news,
        **_labels(),
    )


def _form_values() -> dict[str, Any]:
    return {
        f.name: request.form.get(f.name, "")
        for f in assistance.APPLICATION_FORM.fields
        if f.name in request.form
    }


def _render_form(
    application: Application | None,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return render_template(
        "assistance/form.html",
        application=application,
        values=values,
        errors=errors or {},
        jurisdictions=assistance.open_jurisdictions(get_session()),
        **_labels(),
    ), status


@bp.get("/apply/new")
@login_required
def new() -> tuple[str, int]:
    jurisdictions = assistance.open_jurisdictions(get_session())
    default = jurisdictions[0].code if len(jurisdictions) == 1 else ""
    name = current_user.account.person.name
    return _render_form(None, {"jurisdiction": default, "applicant_name": name})


def _save(application: Application | None) -> Response | tuple[str, int]:
    """Save the draft with its new files; submit too when asked. One transaction."""
    session, now = get_session(), utcnow()
    account = current_user.account
    values = _form_values()
    uploads = [(u.filename or "", u.stream.read()) for u in request.files.getlist("files") if u]
    uploads = [(n, d) for n, d in uploads if n]
    revision = request.form.get("revision", "")
    try:
        for name, data in uploads:
            check_upload(name, data)
        application = assistance.save_draft(
            session,
            account,
            values,
            now,
            application,
            form_int(revision),
        )
        for name, data in uploads:
            assistance.add_file(session, _store(), application, account, name, data, now)
        submitting = request.form.get("action") == "submit"
        if submitting:
            assistance.submit(session, application, account, now)
        session.commit()
    except FormError as exc:
        session.rollback()
        # The draft as it was stored: a failed submission keeps nothing half-saved.
        return _render_form(application, values, exc.errors, 400)
    except Conflict as exc:
        session.rollback()
        flash(str(exc), "error")
        if application is None:
            return redirect(url_for("assistance.portal"))
        return redirect(url_for("assistance.application", application_id=application.id))
    flash(_("Submitted. You can follow it here.") if submitting else _("Draft saved."), "info")
    return redirect(url_for("assistance.application", application_id=application.id))


@bp.post("/apply/new")
@login_required
def create() -> Response | tuple[str, int]:
    return _save(None)


@bp.get("/apply/<int:application_id>")
@login_required
def application(application_id: int) -> str | tuple[str, int]:
    application = _own(application_id)
    if application.status == ApplicationStatus.DRAFT:
        return _render_form(application, assistance.values_of(application))
    page = _render_status(application, news=assistance.has_news(application))
    session = get_session()
    assistance.mark_seen(session, application, utcnow())
    session.commit()
    return page


def _render_status(
    application: Application,
    errors: dict[str, str] | None = None,
    status: int = 200,
    news: bool = False,
) -> tuple[str, int]:
    session = get_session()
    return render_template(
        "assistance/status.html",
        application=application,
        shown=assistance.shown(application, {"medical"}),
        events=assistance.timeline(session, application),
        waiting=assistance.waiting_on(session, application),
        request_open=assistance.open_request(session, application),
        errors=errors or {},
        news=news,
        **_labels(),
    ), status


@bp.post("/apply/<int:application_id>")
@login_required
def update(application_id: int) -> Response | tuple[str, int]:
    return _save(_own(application_id))


@bp.post("/apply/<int:application_id>/documents")
@login_required
def documents(application_id: int) -> Response | tuple[str, int]:
    application = _own(application_id)
    session, now, account = get_session(), utcnow(), current_user.account
    uploads = [(u.filename or "", u.stream.read()) for u in request.files.getlist("files") if u]
    try:
        for name, data in uploads:
            if name:
                assistance.add_file(session, _store(), application, account, name, data, now)
        note = request.form.get("note", "")
        assistance.supply_documents(session, application, account, note, now)
        session.commit()
    except FormError as exc:
        session.rollback()
        return _render_status(application, exc.errors, 400)
    except Conflict as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("assistance.application", application_id=application_id))
    flash(_("Sent. The bureau continues with your application."), "info")
    return redirect(url_for("assistance.application", application_id=application_id))


@bp.post("/apply/<int:application_id>/withdraw")
@login_required
def withdraw(application_id: int) -> Response:
    application = _own(application_id)
    session = get_session()
    try:
        assistance.withdraw(
            session, application, current_user.account, utcnow(), request.form.get("reason", "")
        )
        session.commit()
    except Conflict as exc:
        session.rollback()
        flash(str(exc), "error")
    else:
        flash(_("The application was withdrawn."), "info")
    return redirect(url_for("assistance.application", application_id=application_id))


@bp.get("/apply/<int:application_id>/letter")
@login_required
def letter(application_id: int) -> str:
    """The decision letter (决定书), a printable page."""
    application = _own(application_id)
    if application.status not in assistance.FINAL or application.status == (
        ApplicationStatus.WITHDRAWN
    ):
        abort(404)
    return render_template(
        "assistance/letter.html",
        application=application,
        shown=assistance.shown(application, {"medical"}),
        **_labels(),
    )


def _send(file: ApplicationFile) -> Response:
    path = _store().path(file.sha256)
    if not path.exists():
        abort(410)
    response = send_file(
        path, mimetype=file.content_type, as_attachment=True, download_name=file.filename
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/apply/<int:application_id>/files/<int:file_id>")
@login_required
def own_file(application_id: int, file_id: int) -> Response:
    application = _own(application_id)
    file = get_session().get(ApplicationFile, file_id)
    if file is None or file.application_id != application.id:
        abort(404)
    return _send(file)


# --- a bureau's step of an application ---------------------------------------------------------


def step_context(task: HumanTask, revealed: set[str] | None = None) -> dict[str, Any] | None:
    """What tasks.html adds for a step of an application (None for any other step)."""
    session = get_session()
    root = session.get(Instance, task.instance.root_id)
    application = assistance.application_of_instance(session, root) if root else None
    if application is None:
        return None
    position_id = acting_position(current_viewer(), task)
    may_reveal = position_id is not None and bool(assistance.reveals(session, task))
    return {
        "application": application,
        "shown": assistance.shown(application, revealed or set()),
        "may_reveal": may_reveal and not revealed,
        "revealed": revealed or set(),
        **_labels(),
    }


def _bureau_step(task_id: int) -> tuple[HumanTask, Application, Actor]:
    from .tasks import visible_task

    task = visible_task(task_id)
    viewer = current_viewer()
    position_id = acting_position(viewer, task)
    session = get_session()
    root = session.get(Instance, task.instance.root_id)
    application = assistance.application_of_instance(session, root) if root else None
    if application is None or position_id is None:
        abort(404)
    name = current_user.account.person.name
    return task, application, Actor(position_id, viewer.person_id, name)


@bp.post("/tasks/<int:task_id>/reveal")
@login_required
def reveal(task_id: int) -> tuple[str, int]:
    """Show the step's holder the personal data it needs; the history records it."""
    from .tasks import render_task

    task, application, actor = _bureau_step(task_id)
    session = get_session()
    try:
        revealed = assistance.reveal(session, application, task, actor, utcnow())
        session.commit()
    except PermissionDenied:
        session.rollback()
        abort(403)
    return render_task(task, revealed=revealed)


@bp.post("/tasks/<int:task_id>/application-files/<int:file_id>")
@login_required
def bureau_file(task_id: int, file_id: int) -> Response:
    """A document of the application, for a step that may see personal data (recorded)."""
    task, application, actor = _bureau_step(task_id)
    session = get_session()
    file = session.get(ApplicationFile, file_id)
    if file is None or file.application_id != application.id:
        abort(404)
    if not assistance.reveals(session, task):
        abort(403)
    record(session, task, "file_viewed", utcnow(), actor, {"file": file.id})
    session.commit()
    return _send(file)


def init_app(app: Any) -> None:
    app.register_blueprint(bp)
