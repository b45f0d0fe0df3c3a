"""Read-only overview of the task lists and where each item stands."""

from __future__ import annotations

from collections import Counter

from flask import Blueprint, abort, render_template
from sqlalchemy import func, select

from engine.models import HumanTask, Instance, Plan, TaskState

from . import get_session

bp = Blueprint("overview", __name__)


@bp.get("/lists")
def index() -> str:
    session = get_session()
    plans = list(session.scalars(select(Plan).order_by(Plan.id)))
    status = Counter(
        (plan_id, status.value)
        for plan_id, status in session.execute(
            select(Plan.id, Instance.status)
            .join(Instance.plan_task)
            .join(Plan)
            .where(Instance.parent_id.is_(None))
        )
    )
    open_steps = (
        session.scalar(
            select(func.count()).select_from(HumanTask).where(HumanTask.state == TaskState.READY)
        )
        or 0
    )
    return render_template("overview/index.html", plans=plans, status=status, open_steps=open_steps)


@bp.get("/plans/<key>")
def plan(key: str) -> str:
    session = get_session()
    found = session.scalar(select(Plan).where(Plan.key == key))
    if found is None:
        abort(404)
    items = select(Instance).where(
        Instance.plan_task_id.in_([t.id for t in found.tasks]), Instance.parent_id.is_(None)
    )
    instances = {i.plan_task_id: i for i in session.scalars(items)}
    # Open steps of each item, wherever they are in its tree of branches.
    steps: dict[int, list[HumanTask]] = {}
    for root_id, step in session.execute(
        select(Instance.root_id, HumanTask)
        .join(Instance, HumanTask.instance_id == Instance.id)
        .where(
            Instance.root_id.in_([i.id for i in instances.values()]),
            HumanTask.state == TaskState.READY,
        )
        .order_by(HumanTask.due_at)
    ):
        steps.setdefault(root_id, []).append(step)
    return render_template("overview/plan.html", plan=found, instances=instances, steps=steps)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    get_session().execute(select(1))
    return {"status": "ok"}
