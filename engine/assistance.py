"""Special-family medical assistance (计划生育特殊家庭医疗救助): an applicant's application from
draft to decision. The route is processes/medical_assistance.bpmn; this module keeps the
application row (with the personal data, which never enters the workflow) in step with it,
and answers who may see what.

Personal data: the resident ID number and the medical details (hospital, diagnosis, dates,
costs). Screens show them masked; a holder of a step whose BPMN element names them in its
`reveals` property may unmask them, and every unmasking is a history entry."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState as SpiffState
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import idcard
from .clock import local_today
from .errors import Conflict, FormError, NotFound, PermissionDenied
from .forms import Field, Form, validate
from .items import MAX_ATTACHMENT_BYTES, AttachmentStore, check_upload
from .models import (
    Account,
    Application,
    ApplicationFile,
    ApplicationStatus,
    AssistanceSetting,
    HistoryEntry,
    HumanTask,
    Instance,
    InstanceStatus,
    Jurisdiction,
    TaskState,
)
from .notify import notify
from .runtime import (
    ON_SAVE,
    Actor,
    cancel_instance,
    complete_task,
    element_properties,
    record,
    start_instance,
)

PROCESS_ID = "medical_assistance"
BUSINESS_KEY = re.compile(r"assist-(\d+)")

FAMILY_KINDS = ("child_deceased", "child_disabled")  # 独生子女死亡 / 伤残
RELATIONSHIPS = ("parent", "child_self")  # 父母 / 伤残独生子女本人
EXISTING_SUPPORT = ("none", "dibao", "tekun")  # 无 / 低保 / 特困供养
OPEN = (ApplicationStatus.IN_REVIEW, ApplicationStatus.DOCUMENTS_REQUESTED)
FINAL = (
    ApplicationStatus.APPROVED,
    ApplicationStatus.REJECTED,
    ApplicationStatus.NOT_ELIGIBLE,
    ApplicationStatus.REDIRECTED,
    ApplicationStatus.WITHDRAWN,
)
IDENTITY_FIELDS = ("resident_id",)
MEDICAL_FIELDS = (
    "hospital",
    "diagnosis",
    "admitted_on",
    "discharged_on",
    "total_cost",
    "basic_reimbursed",
    "critical_reimbursed",
)
MONEY_FIELDS = ("total_cost", "basic_reimbursed", "critical_reimbursed")
MAX_FILES = 20


def _text(name: str, max_length: int) -> Field:
    return Field(name, "text", default="", max_length=max_length)


# What the applicant fills in. A draft may be incomplete; `submit` demands the rest.
APPLICATION_FORM = Form(
    "assist_application",
    (
        Field("jurisdiction", "text", default="", max_length=64),
        _text("applicant_name", 50),
        _text("resident_id", 32),
        _text("phone", 20),
        _text("address", 200),
        Field("family_kind", "choice", choices=FAMILY_KINDS, default=""),
        Field("relationship", "choice", choices=RELATIONSHIPS, default=""),
        Field("existing_support", "choice", choices=EXISTING_SUPPORT, default=""),
        _text("hospital", 100),
        _text("diagnosis", 200),
        Field("admitted_on", "date"),
        Field("discharged_on", "date"),
        Field("total_cost", "money"),
        Field("basic_reimbursed", "money"),
        Field("critical_reimbursed", "money"),
    ),
)
REQUIRED_TO_SUBMIT = tuple(f.name for f in APPLICATION_FORM.fields if f.name != "diagnosis")
PHONE = re.compile(r"1\d{10}|0\d{2,3}-?\d{7,8}")


# --- settings ----------------------------------------------------------------------------------


def settings_for(session: Session, jurisdiction_id: int) -> AssistanceSetting | None:
    return session.scalar(
        select(AssistanceSetting).where(AssistanceSetting.jurisdiction_id == jurisdiction_id)
    )


def open_jurisdictions(session: Session) -> list[Jurisdiction]:
    """Where applications can be made: jurisdictions whose settings name the bureaus."""
    return list(
        session.scalars(
            select(Jurisdiction)
            .join(AssistanceSetting, AssistanceSetting.jurisdiction_id == Jurisdiction.id)
            .order_by(Jurisdiction.code)
        )
    )


# --- drafts ------------------------------------------------------------------------------------


def _owned(application: Application, account_id: int) -> None:
    if application.account_id != account_id:
        raise NotFound(f"no application {application.id}")


def _clean(session: Session, data: dict[str, Any], today: date) -> dict[str, Any]:
    clean = validate(APPLICATION_FORM, data, today)
    errors: dict[str, str] = {}
    number = idcard.normalise(clean["resident_id"])
    if number and not re.fullmatch(r"[0-9X]{1,18}", number):
        errors["resident_id"] = "may hold only digits and a final X, at most 18"
    clean["resident_id"] = number
    if clean["jurisdiction"]:
        jur = session.scalar(select(Jurisdiction).where(Jurisdiction.code == clean["jurisdiction"]))
        if jur is None or settings_for(session, jur.id) is None:
            errors["jurisdiction"] = f"'{clean['jurisdiction']}' takes no applications"
        else:
            clean["jurisdiction_id"] = jur.id
    if errors:
        raise FormError(errors)
    return clean


def save_draft(
    session: Session,
    account: Account,
    data: dict[str, Any],
    now: datetime,
    application: Application | None = None,
    revision: int | None = None,
) -> Application:
    """Create or update a draft. `revision` is the one the applicant's form was filled in
    from: if the draft changed since (another tab), nothing is overwritten."""
    clean = _clean(session, data, local_today(now))
    if application is None:
        if "jurisdiction_id" not in clean:
            raise FormError({"jurisdiction": "is required"})
        application = Application(
            account_id=account.id,
            jurisdiction_id=clean["jurisdiction_id"],
            status=ApplicationStatus.DRAFT,
            created_at=now,
        )
        session.add(application)
    else:
        _owned(application, account.id)
        if application.status != ApplicationStatus.DRAFT:
            raise Conflict(f"application {application.id} was submitted and can no longer change")
        if revision is not None and revision != application.revision:
            raise Conflict(
                f"application {application.id} was changed elsewhere since you opened it; "
                "reload it and apply your changes again"
            )
        if "jurisdiction_id" in clean:
            application.jurisdiction_id = clean["jurisdiction_id"]
    for name in (f.name for f in APPLICATION_FORM.fields if f.name != "jurisdiction"):
        value = clean[name]
        if name in ("admitted_on", "discharged_on"):
            value = date.fromisoformat(value) if value else None
        elif name in MONEY_FIELDS:
            value = Decimal(str(value)).quantize(Decimal("0.01")) if value is not None else None
        elif name == "relationship":
            name = "relationship_"
        setattr(application, name, value)
    application.updated_at = now
    session.flush()
    return application


def submission_problems(application: Application, today: date) -> dict[str, str]:
    """Everything that stops a draft from being submitted, by field."""
    problems: dict[str, str] = {}
    values = values_of(application)
    for name in REQUIRED_TO_SUBMIT:
        if name != "jurisdiction" and values.get(name) in (None, ""):
            problems[name] = "is required"
    if application.resident_id:
        try:
            idcard.validate(application.resident_id, today)
        except idcard.InvalidId as exc:
            problems["resident_id"] = str(exc)
    if application.phone and not PHONE.fullmatch(application.phone):
        problems["phone"] = "must be a mobile number (11 digits) or a landline such as 0887-1234567"
    admitted, discharged = application.admitted_on, application.discharged_on
    if admitted and discharged and discharged < admitted:
        problems["discharged_on"] = "must not be before admitted_on"
    if discharged and discharged > today:
        problems["discharged_on"] = "must not be in the future"
    if application.total_cost is not None and application.total_cost <= 0:
        problems["total_cost"] = "must be more than 0"
    remaining = application.remaining
    if remaining is not None and remaining < 0:
        problems["critical_reimbursed"] = (
            "basic and critical-illness reimbursements exceed the total cost"
        )
    if not application.files:
        problems["files"] = "attach the hospital settlement statement (结算单)"
    return problems


def values_of(application: Application) -> dict[str, Any]:
    names = [f.name for f in APPLICATION_FORM.fields if f.name != "jurisdiction"]
    values = {n: getattr(application, "relationship_" if n == "relationship" else n) for n in names}
    values["jurisdiction"] = application.jurisdiction.code if application.jurisdiction else ""
    return values


def _float(value: Decimal | None) -> float:
    return float(value) if value is not None else 0.0


def submit(session: Session, application: Application, account: Account, now: datetime) -> None:
    """Start the process for a complete draft; the whole submission is one transaction."""
    _owned(application, account.id)
    if application.status != ApplicationStatus.DRAFT:
        raise Conflict(f"application {application.id} was already submitted")
    problems = submission_problems(application, local_today(now))
    if problems:
        raise FormError(problems)
    settings = settings_for(session, application.jurisdiction_id)
    if settings is None:
        raise FormError({"jurisdiction": "takes no applications"})
    application.status = ApplicationStatus.IN_REVIEW
    application.submitted_at = now
    application.updated_at = now
    data = {
        "application_id": application.id,
        "applicant": account.id,
        "health_unit": settings.health_unit_id,
        "civil_unit": settings.civil_affairs_unit_id,
        "rural_unit": settings.rural_unit_id,
        "insurance_unit": settings.insurance_unit_id,
        "reviewer_unit": settings.reviewer_unit_id,
        "hardship_relief_enabled": settings.hardship_relief,
        "existing_support": ""
        if application.existing_support == "none"
        else (application.existing_support),
        "total_cost": _float(application.total_cost),
        "basic_reimbursed": _float(application.basic_reimbursed),
        "critical_reimbursed": _float(application.critical_reimbursed),
    }
    session.flush()
    instance = start_instance(
        session,
        PROCESS_ID,
        data,
        f"assist-{application.id}",
        now,
        actor=_applicant(account),
        jurisdiction_id=application.jurisdiction_id,
    )
    application.instance_id = instance.id
    session.flush()


def _applicant(account: Account) -> Actor:
    return Actor(None, account.person_id, "申请人", account_id=account.id)


def withdraw(
    session: Session, application: Application, account: Account, now: datetime, reason: str = ""
) -> None:
    """The applicant takes the application back: open steps end, the bureaus see why."""
    _owned(application, account.id)
    if application.status not in (ApplicationStatus.DRAFT, *OPEN):
        raise Conflict(f"application {application.id} is already {application.status.value}")
    if application.instance_id is not None:
        cancel_instance(
            session, application.instance_id, _applicant(account), now, reason.strip()[:2000]
        )
    application.status = ApplicationStatus.WITHDRAWN
    application.reason = reason.strip()[:2000]
    application.decided_at = application.updated_at = now
    session.flush()


# --- the applicant's own steps -----------------------------------------------------------------


def open_request(session: Session, application: Application) -> HumanTask | None:
    """The applicant's open step (a bureau asked for documents), if any."""
    if application.instance_id is None:
        return None
    return session.scalar(
        select(HumanTask)
        .where(
            HumanTask.instance_id == application.instance_id,
            HumanTask.account_id == application.account_id,
            HumanTask.state == TaskState.READY,
        )
        .order_by(HumanTask.id)
        .limit(1)
    )


def supply_documents(
    session: Session, application: Application, account: Account, note: str, now: datetime
) -> HumanTask:
    """Answer the open request for documents; the process resumes at the step that asked."""
    _owned(application, account.id)
    step = open_request(session, application)
    if step is None:
        raise Conflict(f"application {application.id} has no open request for documents")
    return complete_task(session, step.id, _applicant(account), {"note": note}, now)


def add_file(
    session: Session,
    store: AttachmentStore,
    application: Application,
    account: Account,
    filename: str,
    data: bytes,
    now: datetime,
) -> ApplicationFile:
    """Attach a document while the applicant may: to a draft, or to answer a request."""
    _owned(application, account.id)
    request = open_request(session, application)
    if application.status != ApplicationStatus.DRAFT and request is None:
        raise Conflict("documents can be added to a draft or when a bureau asks for them")
    if len(application.files) >= MAX_FILES:
        raise FormError({"file": f"an application holds at most {MAX_FILES} files"})
    name, content_type = check_upload(filename, data[: MAX_ATTACHMENT_BYTES + 1])
    file = ApplicationFile(
        application=application,
        human_task_id=request.id if request else None,
        filename=name,
        content_type=content_type,
        size=len(data),
        sha256=store.put(data),
        at=now,
    )
    session.add(file)
    if application.instance_id is not None:
        # The file's name may itself be personal: the history records only that one came.
        session.add(
            HistoryEntry(
                instance_id=application.instance_id,
                human_task_id=request.id if request else None,
                action="attached",
                actor_person_id=account.person_id,
                actor_label="申请人",
                data={"size": len(data)},
                at=now,
            )
        )
    application.updated_at = now
    session.flush()
    return file


# --- bureaus: seeing the application -----------------------------------------------------------


def application_of_instance(session: Session, instance: Instance) -> Application | None:
    match = BUSINESS_KEY.fullmatch(instance.business_key)
    if instance.process_id != PROCESS_ID or match is None:
        return None
    return session.get(Application, int(match.group(1)))


def reveals(session: Session, task: HumanTask) -> set[str]:
    """What personal data the holders of this step may unmask ('identity', 'medical')."""
    if task.position_id is None:
        return set()
    props = element_properties(session, task.instance, task.element_id)
    return set(filter(None, props.get("reveals", "").split(",")))


def reveal(
    session: Session, application: Application, task: HumanTask, actor: Actor, now: datetime
) -> set[str]:
    """Unmask for the holder of `task` what its element allows, and record that they did."""
    if task.instance_id != application.instance_id or task.position_id != actor.position_id:
        raise PermissionDenied("only the holder of this application's step may unmask it")
    allowed = reveals(session, task)
    if not allowed:
        raise PermissionDenied(f"step {task.id} ({task.name}) does not need personal data")
    record(session, task, "revealed", now, actor, {"fields": sorted(allowed)})
    session.flush()
    return allowed


@dataclass(frozen=True)
class Shown:
    """An application as a screen may show it: personal data masked unless revealed."""

    values: dict[str, Any]
    masked: frozenset[str]


def shown(application: Application, revealed: set[str] | frozenset[str]) -> Shown:
    values = values_of(application)
    masked: set[str] = set()
    if "identity" not in revealed:
        values["resident_id"] = idcard.mask(application.resident_id)
        masked.add("resident_id")
    if "medical" not in revealed:
        for name in MEDICAL_FIELDS:
            if values.get(name) not in (None, ""):
                values[name] = "***"
                masked.add(name)
    values["remaining"] = "***" if "medical" not in revealed else application.remaining
    return Shown(values, frozenset(masked))


# --- keeping the application in step with its process ------------------------------------------


def _sync_application(
    session: Session, instance: Instance, workflow: BpmnWorkflow, now: datetime
) -> None:
    application = application_of_instance(session, instance)
    if application is None or application.status == ApplicationStatus.WITHDRAWN:
        return
    before = application.status
    _apply_workflow(application, workflow, now)
    if application.status != before:
        # The applicant hears that something changed, never the personal data itself.
        notify(
            session,
            [application.account.person_id],
            "application_status",
            {"application": application.id, "status": application.status.value},
            f"/apply/{application.id}",
            now,
        )


def _apply_workflow(application: Application, workflow: BpmnWorkflow, now: datetime) -> None:
    if workflow.is_completed():
        data = workflow.data
        outcome = data.get("outcome")
        application.status = {
            "approved": ApplicationStatus.APPROVED,
            "rejected": ApplicationStatus.REJECTED,
            "not_eligible": ApplicationStatus.NOT_ELIGIBLE,
            "redirected": ApplicationStatus.REDIRECTED,
        }.get(str(outcome), ApplicationStatus.REJECTED)
        application.decided_at = now
        application.reason = str(data.get("reason") or "") if outcome != "approved" else ""
        if outcome == "approved":
            application.confirmation = str(data.get("confirmation", ""))
            application.aid_amount = Decimal(str(data["aid_amount"])).quantize(Decimal("0.01"))
            application.hardship_relief = bool(data.get("hardship_relief"))
            application.monitored = bool(data.get("monitored"))
            application.decision = {
                k: data.get(k)
                for k in (
                    "basic_reimbursed",
                    "critical_reimbursed",
                    "remaining",
                    "deductible",
                    "rate",
                    "cap",
                    "settlement_no",
                )
            }
        application.updated_at = now
        return
    asking = [
        t
        for t in workflow.get_tasks(state=SpiffState.READY, manual=True)
        if "applicant" in t.task_spec.extensions.get("properties", {})
    ]
    if asking:
        application.status = ApplicationStatus.DOCUMENTS_REQUESTED
        application.reason = str(asking[0].data.get("reason") or "")
    else:
        application.status = ApplicationStatus.IN_REVIEW
        application.reason = ""
    application.updated_at = now


ON_SAVE[PROCESS_ID] = _sync_application


# --- what the applicant reads ------------------------------------------------------------------


def news_count(session: Session, account_id: int) -> int:
    """Submitted applications that changed since their applicant last looked at them."""
    from sqlalchemy import func, or_

    return int(
        session.scalar(
            select(func.count())
            .select_from(Application)
            .where(
                Application.account_id == account_id,
                Application.status != ApplicationStatus.DRAFT,
                or_(Application.seen_at.is_(None), Application.updated_at > Application.seen_at),
            )
        )
        or 0
    )


def mark_seen(session: Session, application: Application, now: datetime) -> None:
    """A plain UPDATE, outside the revision check: the applicant looking must never make a
    bureau's concurrent step fail as a conflict."""
    session.execute(update(Application).where(Application.id == application.id).values(seen_at=now))


def has_news(application: Application) -> bool:
    return application.status != ApplicationStatus.DRAFT and (
        application.seen_at is None or application.updated_at > application.seen_at
    )


def applications_of(session: Session, account_id: int) -> list[Application]:
    return list(
        session.scalars(
            select(Application)
            .where(Application.account_id == account_id)
            .order_by(Application.id.desc())
        )
    )


@dataclass(frozen=True)
class Event:
    """One line of the applicant's timeline: `what` is a key the screens put into words."""

    at: datetime
    what: str
    step: str = ""  # the BPMN element, for the bureau's name
    reason: str = ""


def timeline(session: Session, application: Application) -> list[Event]:
    events = [Event(application.created_at, "drafted")]
    if application.instance_id is None:
        return events
    rows = session.execute(
        select(HistoryEntry.at, HistoryEntry.action, HistoryEntry.data, HumanTask.element_id)
        .outerjoin(HumanTask, HumanTask.id == HistoryEntry.human_task_id)
        .where(HistoryEntry.instance_id == application.instance_id)
        .order_by(HistoryEntry.id)
    ).all()
    for at, action, data, element in rows:
        data = data or {}
        if action == "started":
            events.append(Event(at, "submitted"))
        elif action == "completed" and element:
            decision = str(
                data.get("decision", "") or ("supplied" if element.startswith("supply_") else "")
            )
            events.append(Event(at, f"step:{decision}", element, str(data.get("reason") or "")))
        elif action == "withdrawn":
            events.append(Event(at, "withdrawn", reason=str(data.get("reason") or "")))
    if application.status in FINAL and application.status != ApplicationStatus.WITHDRAWN:
        events.append(
            Event(application.decided_at or application.updated_at, application.status.value)
        )
    return events


def waiting_on(session: Session, application: Application) -> list[HumanTask]:
    """The open steps: whose turn it is."""
    if application.instance_id is None:
        return []
    return list(
        session.scalars(
            select(HumanTask)
            .where(
                HumanTask.instance_id == application.instance_id,
                HumanTask.state == TaskState.READY,
            )
            .order_by(HumanTask.id)
        )
    )


def is_running(application: Application) -> bool:
    return application.instance is not None and application.instance.status == (
        InstanceStatus.RUNNING
    )
