"""The task lists, and for the office where each item of its jurisdiction stands."""

from __future__ import annotations

from collections import Counter

from flask import Blueprint, abort, render_template
from flask_login import login_required
from sqlalchemy import select

from engine.models import HumanTask, Instance, Plan, TaskState

from . import get_session
from .auth import current_viewer

bp = Blueprint("overview", __name__)


@bp.get("/lists")
@login_required
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
    return render_template(
        "overview/index.html",
        plans=plans,
        status=status,
        office_jurisdictions=current_viewer().office_jurisdiction_ids,
    )


@bp.get("/plans/<key>")
@login_required
def plan(key: str) -> str:
    """Where every item of a list stands: for the office of the list's jurisdiction."""
    session = get_session()
    found = session.scalar(select(Plan).where(Plan.key == key))
    if found is None or found.jurisdiction_id not in current_viewer().office_jurisdiction_ids:
        abort(404)
    items = select(Instance).where(
        Instance.plan_task_id.in_([t.id for t in found.tasks]), Instance.parent_id.is_(None)
    )
    instances = {i.plan_task_id: i for i in session.scalars(items)}
    # Open steps of each item, wherever they are in its tree of branches.
    steps: dict[int | None, list[HumanTask]] = {}
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
