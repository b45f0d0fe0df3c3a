"""Administration (系统管理): units and their positions, hand-overs to successors, people and
their sign-in accounts, process deployments. Administrators only: deploying runs code (the
scripts in a BPMN file), and the directory decides who sees and does what."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename
from werkzeug.wrappers import Response

from engine.accounts import MIN_PASSWORD, create_account, set_password
from engine.clock import utcnow
from engine.deploy import Deployed, deploy
from engine.directory import ensure_position, hand_over, holders
from engine.errors import Conflict, DeployError, FormError
from engine.models import (
    Account,
    Holding,
    HumanTask,
    Instance,
    InstanceStatus,
    Jurisdiction,
    Level,
    Person,
    Position,
    PositionKind,
    ProcessVersion,
    TaskState,
    Unit,
    UnitKind,
)

from . import form_int, get_session
from .auth import User, admin_required

bp = Blueprint("admin", __name__, url_prefix="/admin")
PAGE = 100
MAX_PASSWORD = 200
MAX_UPLOADS = 50
PROCESS_SUFFIXES = (".bpmn", ".dmn")

LEVEL_LABELS = {
    Level.PREFECTURE: _l("Prefecture"),
    Level.COUNTY: _l("County"),
    Level.TOWNSHIP: _l("Township"),
}
UNIT_KIND_LABELS = {
    UnitKind.DEPARTMENT: _l("Government department"),
    UnitKind.PARTY: _l("Party organ"),
    UnitKind.GOVERNMENT: _l("Government"),
    UnitKind.LOCAL_GOVERNMENT: _l("Township government"),
    UnitKind.PEOPLE_ORG: _l("People's organisation"),
    UnitKind.OTHER: _l("Other"),
}
POSITION_LABELS = {
    PositionKind.LIAISON: _l("Liaison"),
    PositionKind.HEAD: _l("Head"),
    PositionKind.MEMBER: _l("Joint-meeting member"),
    PositionKind.CONVENER: _l("Convener"),
    PositionKind.DEPUTY_CONVENER: _l("Deputy convener"),
    PositionKind.OFFICE_DIRECTOR: _l("Joint-meeting office director"),
    PositionKind.OFFICE_STAFF: _l("Joint-meeting office staff"),
    PositionKind.REVIEWER: _l("Reviewer"),
}
KIND_ORDER = {kind: i for i, kind in enumerate(PositionKind)}
T = TypeVar("T")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.before_request
@admin_required
def _administrators_only() -> None:
    """Every page here: anonymous visitors are sent to sign in, everyone else but an
    administrator gets 403, before any view runs."""
    return None


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {
        "level_label": lambda level: str(LEVEL_LABELS[level]),
        "unit_kind_label": lambda kind: str(UNIT_KIND_LABELS[kind]),
        "position_label": lambda kind: str(POSITION_LABELS[kind]),
        "self_account_id": getattr(getattr(current_user, "account", None), "id", None),
    }


def _get(model: type[T], row_id: int) -> T:
    row = get_session().get(model, row_id)
    if row is None:
        abort(404)
    return row


def _open_steps(session: Session, position_ids: Iterable[int]) -> dict[int, int]:
    """READY steps per position: the work that follows the position to its next holder."""
    rows = session.execute(
        select(HumanTask.position_id, func.count(HumanTask.id))
        .where(HumanTask.position_id.in_(list(position_ids)), HumanTask.state == TaskState.READY)
        .group_by(HumanTask.position_id)
    ).all()
    return {position_id: count for position_id, count in rows if position_id is not None}


def _current_seats(session: Session, person_ids: Iterable[int]) -> dict[int, list[Position]]:
    seats: dict[int, list[Position]] = defaultdict(list)
    rows = session.execute(
        select(Holding.person_id, Position)
        .join(Position, Position.id == Holding.position_id)
        .where(Holding.person_id.in_(list(person_ids)), Holding.ended_at.is_(None))
        .order_by(Position.unit_id, Position.id)
    ).all()
    for person_id, position in rows:
        seats[person_id].append(position)
    return seats


# ---------------------------------------------------------------- index


@bp.get("/")
def index() -> str:
    session = get_session()
    counts = {
        "units": session.scalar(select(func.count(Unit.id))) or 0,
        "people": session.scalar(select(func.count(Person.id))) or 0,
        "accounts": session.scalar(select(func.count(Account.id))) or 0,
        "versions": session.scalar(select(func.count(ProcessVersion.id))) or 0,
    }
    return render_template("admin/index.html", counts=counts)


# ---------------------------------------------------------------- units and positions


def _jurisdiction_tree(session: Session) -> list[tuple[Jurisdiction, int]]:
    """Every jurisdiction with its depth, each followed by those below it (prefecture →
    county → township)."""
    everything = list(session.scalars(select(Jurisdiction).order_by(Jurisdiction.id)))
    known = {j.id for j in everything}
    children: dict[int | None, list[Jurisdiction]] = defaultdict(list)
    for j in everything:
        children[j.parent_id if j.parent_id in known else None].append(j)
    ordered: list[tuple[Jurisdiction, int]] = []
    stack = [(j, 0) for j in reversed(children[None])]
    while stack:
        j, depth = stack.pop()
        ordered.append((j, depth))
        stack.extend((c, depth + 1) for c in reversed(children[j.id]))
    return ordered


def _subtree(tree: list[tuple[Jurisdiction, int]], code: str) -> list[tuple[Jurisdiction, int]]:
    for start, (j, depth) in enumerate(tree):
        if j.code == code:
            end = start + 1
            while end < len(tree) and tree[end][1] > depth:
                end += 1
            return tree[start:end]
    return tree


@bp.get("/units")
def units() -> str:
    session = get_session()
    tree = _jurisdiction_tree(session)
    selected = request.args.get("jurisdiction", "")
    shown = _subtree(tree, selected) if selected else tree
    by_jurisdiction: dict[int, list[Unit]] = defaultdict(list)
    ids = [j.id for j, _depth in shown]
    for unit in session.scalars(
        select(Unit).where(Unit.jurisdiction_id.in_(ids)).order_by(Unit.id)
    ):
        by_jurisdiction[unit.jurisdiction_id].append(unit)
    return render_template(
        "admin/units.html",
        tree=tree,
        shown=shown,
        selected=selected,
        units=by_jurisdiction,
    )


def _render_unit(
    unit: Unit, errors: dict[str, str] | None = None, status: int = 200
) -> tuple[str, int]:
    session = get_session()
    positions = sorted(unit.positions, key=lambda p: KIND_ORDER[p.kind])
    history = {
        p.id: list(
            session.scalars(
                select(Holding)
                .where(Holding.position_id == p.id)
                .order_by(Holding.started_at.desc(), Holding.id.desc())
            )
        )
        for p in positions
    }
    have = {p.kind for p in positions}
    return render_template(
        "admin/unit.html",
        unit=unit,
        positions=positions,
        history=history,
        open_steps=_open_steps(session, [p.id for p in positions]),
        missing=[kind for kind in PositionKind if kind not in have],
        errors=errors or {},
    ), status


@bp.get("/units/<int:unit_id>")
def unit(unit_id: int) -> tuple[str, int]:
    return _render_unit(_get(Unit, unit_id))


@bp.post("/units/<int:unit_id>/positions")
def add_position(unit_id: int) -> Response | tuple[str, int]:
    unit = _get(Unit, unit_id)
    value = request.form.get("kind", "")
    kind = next((k for k in PositionKind if k.value == value), None)
    if kind is None:
        return _render_unit(unit, {"kind": _("Position: choose a kind of position.")}, 400)
    if kind in {p.kind for p in unit.positions}:
        return _render_unit(unit, {"kind": _("Position: this unit already has one.")}, 400)
    session = get_session()
    try:
        ensure_position(session, unit, kind)
        session.commit()
    except IntegrityError:
        session.rollback()
        return _render_unit(unit, {"kind": _("Position: this unit already has one.")}, 400)
    flash(_("Position added: %(position)s.", position=POSITION_LABELS[kind]), "info")
    return redirect(url_for("admin.unit", unit_id=unit.id))


# ---------------------------------------------------------------- hand-over


SUCCESSOR_FIELDS = ("successor", "person_id", "name", "title", "email", "login")


def _successor_values() -> dict[str, str]:
    values = {name: request.form.get(name, "").strip() for name in SUCCESSOR_FIELDS}
    values["password"] = request.form.get("password", "")
    values["with_account"] = "1" if request.form.get("with_account") else ""
    return values


def _person_fields_errors(values: dict[str, str]) -> dict[str, str]:
    errors = {}
    if not values["name"]:
        errors["name"] = _("Name: enter the successor's name.")
    elif len(values["name"]) > 100:
        errors["name"] = _("Name: at most %(n)d characters.", n=100)
    if len(values["title"]) > 100:
        errors["title"] = _("Job title: at most %(n)d characters.", n=100)
    if len(values["email"]) > 200 or (values["email"] and "@" not in values["email"]):
        errors["email"] = _("Email: enter an address like name@example.gov.cn, or nothing.")
    return errors


def _login_error(session: Session, login: str) -> str | None:
    if not login:
        return _("Login: required.")
    if len(login) > 64 or not login.isprintable():
        return _("Login: at most 64 characters, letters, digits and punctuation.")
    if session.scalar(select(Account.id).where(Account.login == login)) is not None:
        return _("Login: “%(login)s” is already taken.", login=login)
    return None


def _password_error(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return _("Password: at least %(n)d characters.", n=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        return _("Password: at most %(n)d characters.", n=MAX_PASSWORD)
    return None


def _account_errors(session: Session, login: str, password: str) -> dict[str, str]:
    errors = {"login": _login_error(session, login), "password": _password_error(password)}
    return {name: message for name, message in errors.items() if message}


def _chosen_person(session: Session, person_id: str) -> Person | None:
    chosen = form_int(person_id)
    return session.get(Person, chosen) if chosen is not None else None


def _successor_errors(
    session: Session, position: Position, values: dict[str, str]
) -> dict[str, str]:
    errors: dict[str, str] = {}
    person = None
    if values["successor"] == "existing":
        person = _chosen_person(session, values["person_id"])
        if person is None:
            errors["person_id"] = _("Person: choose the successor from the list.")
        elif person in holders(session, position.id):
            errors["person_id"] = _(
                "Person: %(name)s already holds this position.", name=person.name
            )
    elif values["successor"] == "new":
        errors |= _person_fields_errors(values)
    else:
        errors["successor"] = _("Successor: choose an existing person or enter a new one.")
    if values["with_account"]:
        if person is not None and _account_of(session, person.id) is not None:
            errors["login"] = _("Login: %(name)s already has an account.", name=person.name)
        else:
            errors |= _account_errors(session, values["login"], values["password"])
    return errors


def _account_of(session: Session, person_id: int) -> Account | None:
    return session.scalar(select(Account).where(Account.person_id == person_id))


def _render_hand_over(
    position: Position,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    session = get_session()
    people = list(session.scalars(select(Person).order_by(Person.name, Person.id)))
    return render_template(
        "admin/hand_over.html",
        position=position,
        current=holders(session, position.id),
        open_steps=_open_steps(session, [position.id]).get(position.id, 0),
        people=people,
        seats=_current_seats(session, [p.id for p in people]),
        values=values or {"successor": "existing"},
        errors=errors or {},
    ), status


@bp.get("/positions/<int:position_id>/hand-over")
def hand_over_form(position_id: int) -> tuple[str, int]:
    return _render_hand_over(_get(Position, position_id))


def _engine_errors(exc: Exception, login: str) -> dict[str, str]:
    """What the engine refused despite the checks (someone else got there first)."""
    if isinstance(exc, FormError):
        return {name: f"{name}: {message}" for name, message in exc.errors.items()}
    if isinstance(exc, Conflict):
        return {"login": _("Login: “%(login)s” is already taken.", login=login)}
    return {
        "form": _(
            "Someone else changed this at the same time; nothing was saved. Please try again."
        )
    }


def _locked_position(position_id: int) -> Position:
    """The position with its row locked until commit: two simultaneous hand-overs of one seat
    queue up instead of both opening a holding (PostgreSQL; SQLite writers queue anyway)."""
    position = get_session().scalar(
        select(Position).where(Position.id == position_id).with_for_update()
    )
    if position is None:
        abort(404)
    return position


def _moved_message(count: int) -> str:
    if count == 1:
        return _("1 open step now belongs to the successor.")
    return _("%(n)d open steps now belong to the successor.", n=count)


@bp.post("/positions/<int:position_id>/hand-over")
def hand_over_submit(position_id: int) -> Response | tuple[str, int]:
    position = _locked_position(position_id)
    session = get_session()
    values = _successor_values()
    errors = _successor_errors(session, position, values)
    if errors:
        return _render_hand_over(position, values, errors, 400)
    try:
        person = _chosen_person(session, values["person_id"])
        if values["successor"] == "new":
            person = Person(name=values["name"], title=values["title"], email=values["email"])
            session.add(person)
            session.flush()
        assert person is not None
        if values["with_account"]:
            create_account(session, person, values["login"], values["password"])
        hand_over(session, position, person, utcnow())
        moved = _open_steps(session, [position.id]).get(position.id, 0)
        name, unit_id = person.name, position.unit_id
        session.commit()
    except (FormError, Conflict, IntegrityError) as exc:
        session.rollback()
        return _render_hand_over(position, values, _engine_errors(exc, values["login"]), 400)
    flash(
        _(
            "%(unit)s %(position)s handed over to %(person)s.",
            unit=position.unit.name,
            position=POSITION_LABELS[position.kind],
            person=name,
        ),
        "info",
    )
    flash(_moved_message(moved), "info")
    return redirect(url_for("admin.unit", unit_id=unit_id))


# ---------------------------------------------------------------- people and accounts


@bp.get("/people")
def people() -> str:
    session = get_session()
    q = request.args.get("q", "").strip()[:100]
    page = request.args.get("page", "1")
    page_no = form_int(page, 99_999) or 1
    query = select(Person).outerjoin(Account, Account.person_id == Person.id)
    if q:
        query = query.where(
            or_(
                Person.name.contains(q, autoescape=True),
                Account.login.contains(q, autoescape=True),
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(
        session.scalars(
            query.order_by(Person.name, Person.id).limit(PAGE).offset((max(page_no, 1) - 1) * PAGE)
        )
    )
    ids = [p.id for p in rows]
    accounts = {
        a.person_id: a for a in session.scalars(select(Account).where(Account.person_id.in_(ids)))
    }
    return render_template(
        "admin/people.html",
        people=rows,
        seats=_current_seats(session, ids),
        accounts=accounts,
        q=q,
        page=page_no,
        pages=max((total + PAGE - 1) // PAGE, 1),
        total=total,
    )


def _render_person(
    person: Person,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    session = get_session()
    holdings = list(
        session.scalars(
            select(Holding)
            .where(Holding.person_id == person.id)
            .order_by(Holding.started_at.desc(), Holding.id.desc())
        )
    )
    return render_template(
        "admin/person.html",
        person=person,
        account=_account_of(session, person.id),
        holdings=holdings,
        errors=errors or {},
        values=values or {},
    ), status


@bp.get("/people/<int:person_id>")
def person(person_id: int) -> tuple[str, int]:
    return _render_person(_get(Person, person_id))


@bp.post("/people/<int:person_id>/account")
def create_person_account(person_id: int) -> Response | tuple[str, int]:
    person = _get(Person, person_id)
    session = get_session()
    values = {
        "login": request.form.get("login", "").strip(),
        "is_admin": "1" if request.form.get("is_admin") else "",
    }
    password = request.form.get("password", "")
    if _account_of(session, person.id) is not None:
        return _render_person(
            person, {"login": _("Login: this person already has an account.")}, values, 400
        )
    errors = _account_errors(session, values["login"], password)
    if errors:
        return _render_person(person, errors, values, 400)
    try:
        create_account(
            session, person, values["login"], password, is_admin=bool(values["is_admin"])
        )
        session.commit()
    except (FormError, Conflict, IntegrityError) as exc:
        session.rollback()
        return _render_person(person, _engine_errors(exc, values["login"]), values, 400)
    flash(
        _("Account %(login)s created for %(name)s.", login=values["login"], name=person.name),
        "info",
    )
    return redirect(url_for("admin.person", person_id=person.id))


@bp.post("/accounts/<int:account_id>/password")
def reset_password(account_id: int) -> Response | tuple[str, int]:
    account = _get(Account, account_id)
    password = request.form.get("password", "")
    error = _password_error(password)
    if error:
        return _render_person(account.person, {"password": error}, status=400)
    session = get_session()
    try:
        set_password(account, password)
        session.commit()
    except FormError as exc:
        session.rollback()
        return _render_person(account.person, _engine_errors(exc, account.login), status=400)
    if account.id == current_user.account.id:
        login_user(User(account))  # a new password ends every session but this one
    flash(
        _(
            "Password of %(login)s reset. Tell them the new password in person.",
            login=account.login,
        ),
        "info",
    )
    return redirect(url_for("admin.person", person_id=account.person_id))


def _flag(name: str) -> bool | None:
    """An explicit on/off from a form (never a toggle: a second click must not undo the first)."""
    value = request.form.get(name, "")
    return {"1": True, "0": False}.get(value)


@bp.post("/accounts/<int:account_id>/active")
def set_active(account_id: int) -> Response | tuple[str, int]:
    account = _get(Account, account_id)
    active = _flag("active")
    if active is None:
        return _render_person(
            account.person, {"active": _("Status: choose on or off.")}, status=400
        )
    if not active and account.id == current_user.account.id:
        return _render_person(
            account.person, {"active": _("You cannot deactivate yourself.")}, status=400
        )
    account.active = active
    get_session().commit()
    if active:
        flash(_("Account %(login)s activated.", login=account.login), "info")
    else:
        flash(
            _(
                "Account %(login)s deactivated: it can no longer sign in or use its API tokens.",
                login=account.login,
            ),
            "info",
        )
    return redirect(url_for("admin.person", person_id=account.person_id))


@bp.post("/accounts/<int:account_id>/admin")
def set_admin(account_id: int) -> Response | tuple[str, int]:
    account = _get(Account, account_id)
    is_admin = _flag("is_admin")
    if is_admin is None:
        return _render_person(
            account.person, {"admin": _("Administrator: choose on or off.")}, status=400
        )
    if not is_admin and account.id == current_user.account.id:
        return _render_person(
            account.person,
            {"admin": _("You cannot remove your own administrator rights.")},
            status=400,
        )
    account.is_admin = is_admin
    get_session().commit()
    if is_admin:
        flash(_("%(login)s is now an administrator.", login=account.login), "info")
    else:
        flash(_("%(login)s is no longer an administrator.", login=account.login), "info")
    return redirect(url_for("admin.person", person_id=account.person_id))


# ---------------------------------------------------------------- deployments


def _render_deployments(problems: list[str] | None = None, status: int = 200) -> tuple[str, int]:
    session = get_session()
    versions = list(
        session.scalars(
            select(ProcessVersion)
            .options(defer(ProcessVersion.spec), defer(ProcessVersion.sources))
            .order_by(ProcessVersion.process_id, ProcessVersion.version.desc())
        )
    )
    running: dict[int, int] = {
        version_id: count
        for version_id, count in session.execute(
            select(Instance.process_version_id, func.count(Instance.id))
            .where(Instance.status == InstanceStatus.RUNNING)
            .group_by(Instance.process_version_id)
        )
    }
    latest: dict[str, int] = {}
    for v in versions:
        latest.setdefault(v.process_id, v.id)
    return render_template(
        "admin/deployments.html",
        versions=versions,
        running=running,
        latest=set(latest.values()),
        problems=problems or [],
    ), status


@bp.get("/deployments")
def deployments() -> tuple[str, int]:
    return _render_deployments()


@bp.get("/deployments/<int:version_id>")
def version(version_id: int) -> str:
    row = _get(ProcessVersion, version_id)
    running = get_session().scalar(
        select(func.count(Instance.id)).where(
            Instance.process_version_id == row.id, Instance.status == InstanceStatus.RUNNING
        )
    )
    return render_template("admin/version.html", version=row, running=running or 0)


def _upload_problems(files: list[FileStorage]) -> list[str]:
    if not files:
        return [_("Files: choose at least one .bpmn or .dmn file.")]
    if len(files) > MAX_UPLOADS:
        return [_("Files: at most %(n)d files at once.", n=MAX_UPLOADS)]
    problems, seen = [], set()
    for upload in files:
        name = secure_filename(upload.filename or "")
        if not name.lower().endswith(PROCESS_SUFFIXES) or not Path(name).stem:
            problems.append(
                _("%(name)s: only .bpmn and .dmn files can be deployed.", name=upload.filename)
            )
        elif name in seen:
            problems.append(_("%(name)s: the same file name is uploaded twice.", name=name))
        seen.add(name)
    return problems


def _deployed_message(results: list[Deployed]) -> str:
    parts = [
        _("%(process)s version %(version)d (new)", process=r.process_id, version=r.version)
        if r.created
        else _(
            "%(process)s version %(version)d (unchanged)", process=r.process_id, version=r.version
        )
        for r in results
    ]
    return _("Deployed: %(list)s.", list="; ".join(parts))


def _deploy_files(session: Session, files: list[FileStorage]) -> list[Deployed]:
    """Save the uploads under safe names in a private directory and deploy them; DeployError
    problems name the files as uploaded, not the temporary directory."""
    with tempfile.TemporaryDirectory(prefix="duban-deploy-") as tmp:
        paths = []
        for upload in files:
            path = Path(tmp) / secure_filename(upload.filename or "")
            upload.save(path)
            paths.append(path)
        try:
            return deploy(session, paths, deployed_by=current_user.account.login)
        except DeployError as exc:
            raise DeployError([p.replace(f"{tmp}/", "") for p in exc.problems]) from None


@bp.post("/deployments")
def deploy_upload() -> Response | tuple[str, int]:
    files = [f for f in request.files.getlist("files") if f and f.filename]
    problems = _upload_problems(files)
    if problems:
        return _render_deployments(problems, 400)
    session = get_session()
    try:
        results = _deploy_files(session, files)
        session.commit()
    except DeployError as exc:
        session.rollback()
        return _render_deployments(exc.problems, 400)
    except Exception:
        session.rollback()
        raise
    if not results:
        flash(
            _(
                "No process was deployed: upload each .bpmn file together with the .dmn "
                "files it uses."
            ),
            "error",
        )
    else:
        flash(_deployed_message(results), "info")
    return redirect(url_for("admin.deployments"))
