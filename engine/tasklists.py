"""Importing a task-division list (重点任务分工清单): check every row, then write all or nothing."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .directory import descendants, read_toml, unit_names
from .errors import ImportErrors
from .models import Instance, Jurisdiction, Plan, PlanTask, PlanTaskUnit, Role, Unit, UnitKind

ROLES = (Role.LEAD, Role.SUPPORT, Role.IMPLEMENT)
# Collective names the lists use: "every township", "every county and city", "every member unit".
LOCAL_GOVERNMENTS = re.compile(r"^(县)?各(乡\(镇\)|乡（镇）|乡镇|县市|县\(市\)|县（市）)")
MEMBER_UNITS = re.compile(r"联席会议成员单位$")


@dataclass(frozen=True)
class TaskRow:
    number: int
    text: str
    units: tuple[tuple[Role, int], ...]  # (role, unit id) in the order written


@dataclass(frozen=True)
class ImportResult:
    plan_key: str
    tasks: int
    changed: bool


def _expand(
    session: Session, name: str, jur: Jurisdiction, names: dict[str, Unit]
) -> list[Unit] | None:
    if LOCAL_GOVERNMENTS.match(name):
        children = [
            j.id
            for j in session.scalars(select(Jurisdiction).where(Jurisdiction.parent_id == jur.id))
        ]
        return list(
            session.scalars(
                select(Unit)
                .where(Unit.jurisdiction_id.in_(children), Unit.kind == UnitKind.LOCAL_GOVERNMENT)
                .order_by(Unit.id)
            )
        )
    if MEMBER_UNITS.search(name):
        return list(
            session.scalars(
                select(Unit)
                .where(Unit.jurisdiction_id == jur.id, Unit.member.is_(True))
                .order_by(Unit.id)
            )
        )
    unit = names.get(name)
    return [unit] if unit is not None else None


def _row_label(task: dict[str, Any], index: int) -> str:
    text = str(task.get("text", "")).replace("\n", "")
    short = text[:24] + ("…" if len(text) > 24 else "")
    return f"row {index} (task {task.get('number', '?')}: {short})"


def validate_plan(
    session: Session, doc: dict[str, Any]
) -> tuple[dict[str, Any], list[TaskRow], list[str]]:
    """Check the whole file; return the plan header, the resolved rows and every problem."""
    problems: list[str] = []
    plan = doc.get("plan")
    if not isinstance(plan, dict):
        return {}, [], ["[plan] table is missing"]
    for key in ("key", "title", "jurisdiction"):
        if not plan.get(key):
            problems.append(f"[plan]: '{key}' is missing")
    if "issued_on" in plan and not isinstance(plan["issued_on"], date):
        problems.append("[plan]: 'issued_on' must be a date like 2023-06-28")
    jur = session.scalar(select(Jurisdiction).where(Jurisdiction.code == plan.get("jurisdiction")))
    if plan.get("jurisdiction") and jur is None:
        problems.append(
            f"[plan]: unknown jurisdiction '{plan['jurisdiction']}' (load the directory first)"
        )
    tasks = doc.get("tasks", [])
    if not tasks:
        problems.append("the file has no [[tasks]]")
    names = unit_names(session, descendants(session, jur)) if jur is not None else {}
    rows: list[TaskRow] = []
    seen: dict[int, int] = {}
    for index, task in enumerate(tasks, 1):
        label = _row_label(task, index)
        number = task.get("number")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            problems.append(f"{label}: 'number' must be a positive whole number")
        elif number in seen:
            problems.append(f"{label}: duplicate number {number} (also row {seen[number]})")
        else:
            seen[number] = index
        text = task.get("text")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{label}: 'text' is missing")
        office_leads = task.get("office_leads") is True
        if office_leads and (jur is None or jur.office_unit_id is None):
            problems.append(f"{label}: office_leads is set but the jurisdiction has no office")
        if not task.get("lead") and not office_leads:
            problems.append(
                f"{label}: no lead unit (牵头); name one, or set office_leads = true "
                "when the joint-meeting office consolidates"
            )
        units: list[tuple[Role, int]] = []
        placed: set[int] = set()
        if office_leads and jur is not None and jur.office_unit_id is not None:
            placed.add(jur.office_unit_id)
            units.append((Role.LEAD, jur.office_unit_id))
        for role in ROLES:
            listed = task.get(role.value, [])
            if not isinstance(listed, list):
                problems.append(f"{label}: '{role.value}' must be a list of unit names")
                continue
            for name in listed:
                found = _expand(session, name, jur, names) if jur is not None else []
                if found is None:
                    problems.append(f"{label}: unknown unit '{name}' in {role.value}")
                    continue
                for unit in found:
                    # A unit takes part once, in its first (strongest) role.
                    if unit.id not in placed:
                        placed.add(unit.id)
                        units.append((role, unit.id))
        if isinstance(number, int) and isinstance(text, str):
            rows.append(TaskRow(number, text.strip(), tuple(units)))
    return plan, rows, problems


def _content_hash(plan: dict[str, Any], rows: list[TaskRow]) -> str:
    body = {
        "plan": {k: str(v) for k, v in sorted(plan.items())},
        "tasks": [[r.number, r.text, [[role.value, uid] for role, uid in r.units]] for r in rows],
    }
    return hashlib.sha256(json.dumps(body, ensure_ascii=False).encode()).hexdigest()


def import_plan(session: Session, path: Path) -> ImportResult:
    """Import a task list file. Every problem is reported together and nothing is written;
    importing an unchanged file again changes nothing."""
    return import_document(session, read_toml(path), str(path))


def import_document(session: Session, doc: dict[str, Any], source: str) -> ImportResult:
    """Import a list read from any source (a data file, an Excel sheet), all or nothing."""
    path = source
    plan_doc, rows, problems = validate_plan(session, doc)
    if problems:
        raise ImportErrors(str(path), problems)
    digest = _content_hash(plan_doc, rows)
    jur = session.scalar(select(Jurisdiction).where(Jurisdiction.code == plan_doc["jurisdiction"]))
    assert jur is not None  # checked by validate_plan
    plan = session.scalar(select(Plan).where(Plan.key == plan_doc["key"]))
    if plan is not None and plan.content_hash == digest:
        return ImportResult(plan.key, len(plan.tasks), changed=False)
    if plan is not None:
        started = session.scalar(
            select(Instance.id).join(PlanTask).where(PlanTask.plan_id == plan.id).limit(1)
        )
        if started is not None:
            raise ImportErrors(
                str(path),
                [
                    f"plan '{plan.key}' has items already handed out; a changed list cannot "
                    "replace it (import it under a new key)"
                ],
            )
        plan.tasks.clear()
        session.flush()
    else:
        plan = Plan(key=plan_doc["key"])
    plan.title = plan_doc["title"]
    plan.list_title = plan_doc.get("list_title", "")
    plan.document_number = plan_doc.get("document_number", "")
    plan.issued_on = plan_doc.get("issued_on")
    plan.jurisdiction_id = jur.id
    plan.content_hash = digest
    session.add(plan)
    for row in rows:
        plan.tasks.append(
            PlanTask(
                number=row.number,
                text=row.text,
                units=[
                    PlanTaskUnit(unit_id=uid, role=role, ordinal=i)
                    for i, (role, uid) in enumerate(row.units)
                ],
            )
        )
    session.flush()
    return ImportResult(plan.key, len(rows), changed=True)


def get_plan(session: Session, key: str) -> Plan:
    from .errors import NotFound

    plan = session.scalar(select(Plan).where(Plan.key == key))
    if plan is None:
        raise NotFound(f"no plan with key '{key}'")
    return plan
