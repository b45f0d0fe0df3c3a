"""Handing out the items of a task list: one `task_routing` instance per item, carrying its lead,
supporting and implementing units as instance data (one branch per unit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .clock import local_today
from .errors import DubanError, NotFound
from .models import Instance, Jurisdiction, Plan, PlanTask, Role
from .runtime import Actor, start_instance
from .tasklists import get_plan

PROCESS_ID = "task_routing"


@dataclass(frozen=True)
class RoutingSettings:
    """Days the units get for the first steps; the lead unit sets the later due dates itself."""

    acknowledge_days: int = 3
    plan_days: int = 7


def business_key(plan: Plan, task: PlanTask) -> str:
    return f"{plan.key}#{task.number}"


def routing_data(
    session: Session, task: PlanTask, now: datetime, settings: RoutingSettings
) -> dict[str, Any]:
    leads = [u.unit_id for u in task.units if u.role == Role.LEAD]
    if not leads:
        raise DubanError(f"task {task.number} has no lead unit")
    jurisdiction = session.get(Jurisdiction, task.plan.jurisdiction_id)
    if jurisdiction is None or jurisdiction.office_unit_id is None:
        raise DubanError(f"jurisdiction of plan '{task.plan.key}' has no joint-meeting office")
    today = local_today(now)
    return {
        "item": {"plan": task.plan.key, "number": task.number},
        "lead_unit": leads[0],
        "office_unit": jurisdiction.office_unit_id,
        "units": [{"unit": u.unit_id, "role": u.role.value} for u in task.units],
        # Co-lead units contribute like supporting units; the first lead consolidates.
        "contributors": [
            {"unit": u.unit_id, "role": u.role.value}
            for u in task.units
            if u.role == Role.SUPPORT or (u.role == Role.LEAD and u.unit_id != leads[0])
        ],
        "implementers": [
            {"unit": u.unit_id, "role": u.role.value}
            for u in task.units
            if u.role == Role.IMPLEMENT
        ],
        "ack_due": (today + timedelta(days=settings.acknowledge_days)).isoformat(),
        "plan_due": (today + timedelta(days=settings.plan_days)).isoformat(),
    }


def hand_out(
    session: Session,
    plan_key: str,
    numbers: list[int] | None,
    now: datetime,
    actor: Actor | None = None,
    settings: RoutingSettings | None = None,
) -> list[Instance]:
    """Start routing for the given items of a plan (all not yet started when `numbers` is None)."""
    plan = get_plan(session, plan_key)
    settings = settings or RoutingSettings()
    by_number = {t.number: t for t in plan.tasks}
    started_ids = set(
        session.scalars(
            select(Instance.plan_task_id).where(
                Instance.plan_task_id.in_([t.id for t in plan.tasks])
            )
        )
    )
    if numbers is None:
        chosen = [t for t in plan.tasks if t.id not in started_ids]
    else:
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise NotFound(f"plan '{plan_key}' has no task {', '.join(map(str, missing))}")
        chosen = [by_number[n] for n in numbers]
    return [
        start_instance(
            session,
            PROCESS_ID,
            routing_data(session, task, now, settings),
            business_key(plan, task),
            now,
            plan_task_id=task.id,
            actor=actor,
            jurisdiction_id=plan.jurisdiction_id,
        )
        for task in chosen
    ]
