"""Acting in tests as the position a step is assigned to, with plausible form answers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FixedClock, local_today
from engine.models import HistoryEntry, HumanTask, Instance, TaskState
from engine.runtime import Actor, complete_task, start_deferred


def answer(form: str, clock: FixedClock, **override: Any) -> dict[str, Any]:
    today = local_today(clock())
    day = (today + timedelta(days=20)).isoformat()
    answers: dict[str, dict[str, Any]] = {
        "acknowledge": {"note": "收到"},
        "plan": {"plan": "按月推进", "support_due": day, "implement_due": day, "final_due": day},
        "contribute": {"content": "配合材料"},
        "report": {"content": "已完成", "final": True},
        "consolidate": {"summary": "汇总情况"},
        "review": {"decision": "close"},
        "decide_extension": {"approved": True, "new_due": day},
        "assist_confirm_family": {"decision": "confirm"},
        "assist_confirm_household": {"decision": "confirm"},
        "assist_verify": {"decision": "verified", "verified_basic": "0", "verified_critical": "0"},
        "assist_decide": {"decision": "approve"},
        "assist_supply": {"note": "已补充"},
        "minutes_submit": {},
        "minutes_review": {"decision": "agree"},
        "minutes_finalize": {},
        "minutes_sign": {"decision": "sign"},
        "indicator_report": {"value": "1"},
    }
    return {**answers[form], **override}


def open_steps(session: Session, instance_id: int | None = None) -> list[HumanTask]:
    """Open steps, of one routed item (the instance and its branches) when given."""
    query = select(HumanTask).where(HumanTask.state == TaskState.READY)
    if instance_id is not None:
        branches = select(Instance.id).where(Instance.root_id == instance_id)
        query = query.where(HumanTask.instance_id.in_(branches))
    return list(session.scalars(query.order_by(HumanTask.id)))


def act(
    sessions: sessionmaker[Session], step: HumanTask, clock: FixedClock, **override: Any
) -> HumanTask:
    """Complete `step` as its own position, in one transaction; then, as the scheduler would,
    start the branches of a wide fan-out left to start after it (engine.runtime.SPAWN_INLINE)."""
    with sessions.begin() as session:
        done = complete_task(
            session,
            step.id,
            Actor(position_id=step.position_id),
            answer(step.form, clock, **override),
            clock(),
        )
    start_deferred(sessions, clock())
    return done


def drive(
    sessions: sessionmaker[Session], clock: FixedClock, instance_id: int | None = None
) -> int:
    """Complete every open step until none is left; returns how many were completed."""
    done = 0
    while True:
        with sessions() as session:
            steps = open_steps(session, instance_id)
        if not steps:
            return done
        for step in steps:
            act(sessions, step, clock)
            done += 1


def completed_count(session: Session) -> int:
    """How many step completions the history records (a step done twice would show)."""
    query = select(func.count()).select_from(HistoryEntry).where(HistoryEntry.action == "completed")
    return session.scalar(query) or 0


def until_review(
    sessions: sessionmaker[Session], clock: FixedClock, item_id: int, late: FixedClock | None = None
) -> HumanTask:
    """Complete an item's steps (acknowledgements at `late` when given) until the office's
    review is open; return that review step."""
    while True:
        with sessions() as session:
            steps = open_steps(session, item_id)
        review = [t for t in steps if t.element_id == "review"]
        if review:
            return review[0]
        for step in steps:
            act(sessions, step, late if late and step.element_id == "acknowledge" else clock)
