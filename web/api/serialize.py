"""Rows as JSON: times in UTC ISO-8601 ("2026-11-28T15:59:59Z"), due dates also as the local
(Asia/Shanghai) day they fall on, references as small objects with an id and a name."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from flask import request, url_for
from flask_babel import force_locale
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from engine.access import ITEM_COLUMNS, join_item, urgency
from engine.clock import LOCAL_TZ, as_utc
from engine.direct import Direct, rows
from engine.forms import Field, Form
from engine.items import Item
from engine.models import (
    Account,
    Attachment,
    Comment,
    HistoryEntry,
    HumanTask,
    Instance,
    Jurisdiction,
    Person,
    Plan,
    PlanTask,
    Position,
    Role,
    TaskState,
    Unit,
)
from web.forms import field_label, form_title
from web.i18n import LOCALES

from .common import Caller

EXCERPT = 60


def iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat().replace("+00:00", "Z") if value is not None else None


def local_day(value: datetime | None) -> str | None:
    return as_utc(value).astimezone(LOCAL_TZ).date().isoformat() if value is not None else None


def excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"


def unit_ref(unit: Unit) -> dict[str, Any]:
    return {"id": unit.id, "name": unit.name}


def position_ref(position: Position) -> dict[str, Any]:
    return {
        "id": position.id,
        "kind": position.kind.value,
        "title": position.title,
        "unit": unit_ref(position.unit),
    }


# Built once: an inbox poll and every completion run it.
_REFS = join_item(select(Instance.id.label("instance_id"), *ITEM_COLUMNS))
_ITEM_REFS = _REFS.where(Instance.id.in_(bindparam("ids", expanding=True)))
# One step's item (a step page, a completion's answer): prebuilt for the driver (engine.direct).
_ITEM_REF = Direct(_REFS.where(Instance.id == bindparam("id")))


def item_refs(session: Session, instance_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """For each instance (an item or one of its branches), the item it belongs to."""
    ids = list(set(instance_ids))
    if not ids:
        return {}
    if len(ids) == 1:
        found = rows(session.connection(), _ITEM_REF, {"id": ids[0]})
    else:
        found = [dict(r) for r in session.connection().execute(_ITEM_REFS, {"ids": ids}).mappings()]
    return {
        r["instance_id"]: item_ref(
            r["root_id"], r["business_key"], r["plan_key"], r["number"], r["text"]
        )
        for r in found
    }


def item_ref(
    root_id: int, key: str, plan_key: str | None, number: int | None, text: str | None
) -> dict[str, Any]:
    return {
        "id": root_id,
        "business_key": key,
        "plan": plan_key,
        "number": number,
        "excerpt": excerpt(text) if text is not None else None,
    }


def step(task: HumanTask, item: dict[str, Any], now: datetime) -> dict[str, Any]:
    position, unit = task.position, task.unit
    assert position is not None and unit is not None  # a unit's step (see steps())
    return _step(
        task.id,
        task.name,
        task.element_id,
        task.form,
        task.state,
        task.due_at,
        task.created_at,
        task.completed_at,
        unit_ref(unit),
        {"id": position.id, "kind": position.kind.value, "title": position.title},
        item,
        now,
    )


def step_row(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The same as step() for a row of engine.access.STEP_ROW."""
    return _step(
        row["id"],
        row["name"],
        row["element_id"],
        row["form"],
        row["state"],
        row["due_at"],
        row["created_at"],
        row["completed_at"],
        {"id": row["unit_id"], "name": row["unit_name"]},
        {
            "id": row["position_id"],
            "kind": row["position_kind"].value,
            "title": row["position_title"],
        },
        item_ref(row["root_id"], row["business_key"], row["plan_key"], row["number"], row["text"]),
        now,
    )


def _step(
    step_id: int,
    name: str,
    element: str,
    form: str,
    state: TaskState,
    due_at: datetime | None,
    created_at: datetime,
    completed_at: datetime | None,
    unit: dict[str, Any],
    position: dict[str, Any],
    item: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": step_id,
        "name": name,
        "element": element,
        "form": form,
        "state": state.value,
        "unit": unit,
        "position": position,
        "due_at": iso(due_at),
        "due_date": local_day(due_at),
        "urgency": urgency(due_at, now).value if state == TaskState.READY else None,
        "created_at": iso(created_at),
        "completed_at": iso(completed_at),
        "item": item,
    }


def steps(session: Session, tasks: list[HumanTask], now: datetime) -> list[dict[str, Any]]:
    # An applicant's own step (medical assistance) is the applicant's, shown only in the portal.
    tasks = [t for t in tasks if t.position_id is not None]
    items = item_refs(session, (t.instance_id for t in tasks))
    return [step(t, items[t.instance_id], now) for t in tasks]


def _locale(caller: Caller) -> str:
    asked = request.args.get("lang", "")
    return asked if asked in LOCALES else caller.locale if caller.locale in LOCALES else "zh_CN"


def field(f: Field) -> dict[str, Any]:
    when = f.required_when
    return {
        "name": f.name,
        "label": field_label(f.name),
        "kind": f.kind,
        "required": f.required,
        "required_when": {"field": when[0], "value": when[1]} if when else None,
        "choices": list(f.choices),
        "default": f.default,
        "max_length": f.max_length if f.kind == "text" else None,
        "not_before_today": f.not_before_today,
    }


def form(definition: Form, caller: Caller) -> dict[str, Any]:
    return _form(definition, _locale(caller))


@functools.cache  # a form and its labels in a language never change while the app runs
def _form(definition: Form, locale: str) -> dict[str, Any]:
    with force_locale(locale):
        return {
            "name": definition.name,
            "title": form_title(definition.name),
            "fields": [field(f) for f in definition.fields],
        }


def plan(row: Plan, task_count: int) -> dict[str, Any]:
    return {
        "key": row.key,
        "title": row.title,
        "list_title": row.list_title,
        "document_number": row.document_number,
        "issued_on": row.issued_on.isoformat() if row.issued_on else None,
        "jurisdiction": {"code": row.jurisdiction.code, "name": row.jurisdiction.name},
        "task_count": task_count,
    }


def me(account: Account, positions: list[Position], offices: list[Jurisdiction]) -> dict[str, Any]:
    person = account.person
    return {
        "account": {"id": account.id, "login": account.login, "locale": account.locale},
        "person": {"id": person.id, "name": person.name, "title": person.title},
        "is_admin": account.is_admin,
        "positions": [
            {
                **position_ref(p),
                "unit": {
                    **unit_ref(p.unit),
                    "kind": p.unit.kind.value,
                    "jurisdiction": {
                        "code": p.unit.jurisdiction.code,
                        "name": p.unit.jurisdiction.name,
                    },
                },
            }
            for p in positions
        ],
        # The jurisdictions whose joint-meeting office the person sits in: they see its items.
        "office_jurisdictions": [{"code": j.code, "name": j.name} for j in offices],
    }


class People:
    """Names of people and positions a page mentions, loaded together rather than one by one."""

    def __init__(self, session: Session, person_ids: set[int], position_ids: set[int]) -> None:
        self.names: dict[int, str] = dict(
            session.execute(select(Person.id, Person.name).where(Person.id.in_(person_ids))).all()
        )
        self.positions = {
            p.id: p
            for p in session.scalars(
                select(Position)
                .options(joinedload(Position.unit))
                .where(Position.id.in_(position_ids))
            )
        }

    def person(self, person_id: int | None) -> dict[str, Any] | None:
        if person_id is None or person_id not in self.names:
            return None
        return {"id": person_id, "name": self.names[person_id]}

    def position(self, position_id: int | None) -> dict[str, Any] | None:
        found = self.positions.get(position_id) if position_id is not None else None
        return position_ref(found) if found is not None else None


def history_entry(entry: HistoryEntry, people: People) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "action": entry.action,
        "step_id": entry.human_task_id,
        "actor": {
            "person": people.person(entry.actor_person_id),
            "position": people.position(entry.actor_position_id),
            "label": entry.actor_label,
        },
        "data": entry.data,
    }


def comment(row: Comment, people: People) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": iso(row.at),
        "step_id": row.human_task_id,
        "body": row.body,
        "person": people.person(row.person_id),
        "position": people.position(row.position_id),
    }


def attachment(row: Attachment, people: People) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": iso(row.at),
        "step_id": row.human_task_id,
        "filename": row.filename,
        "content_type": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "uploaded_by": people.person(row.uploaded_by_id),
        "position": people.position(row.position_id),
        "download_url": url_for("api.download", attachment_id=row.id),
    }


def people_of(session: Session, item: Item) -> People:
    persons = {h.actor_person_id for h in item.history if h.actor_person_id is not None}
    positions = {h.actor_position_id for h in item.history if h.actor_position_id is not None}
    persons |= {c.person_id for c in item.comments} | {a.uploaded_by_id for a in item.attachments}
    positions |= {c.position_id for c in item.comments} | {a.position_id for a in item.attachments}
    return People(session, persons, positions)


def plan_task(task: PlanTask | None) -> dict[str, Any] | None:
    if task is None:
        return None
    return {
        "plan": {
            "key": task.plan.key,
            "title": task.plan.title,
            "document_number": task.plan.document_number,
        },
        "number": task.number,
        "text": task.text,
        "units": {role.value: [unit_ref(u) for u in task.units_in(role)] for role in Role},
    }


def item(session: Session, loaded: Item, now: datetime) -> dict[str, Any]:
    root = loaded.root
    people = people_of(session, loaded)
    ref = item_refs(session, [root.id])[root.id]
    return {
        "id": root.id,
        "business_key": root.business_key,
        "process_id": root.process_id,
        "status": root.status.value,
        "created_at": iso(root.created_at),
        "completed_at": iso(root.completed_at),
        "plan_task": plan_task(loaded.plan_task),
        "steps": [step(t, ref, now) for t in loaded.steps],
        "history": [history_entry(h, people) for h in loaded.history],
        "comments": [comment(c, people) for c in loaded.comments],
        "attachments": [attachment(a, people) for a in loaded.attachments],
    }
