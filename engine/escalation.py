"""Supervision: due-date timers firing (reminders, overdue, 催办, escalation), the office's manual
reminders, and who is told of what. The scheduler (duban.scheduler) calls `sweep`; everything
here is one transaction per firing, idempotent, and takes the time as an argument."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from .errors import FormError, PermissionDenied
from .models import (
    HistoryEntry,
    HumanTask,
    Instance,
    Jurisdiction,
    PositionKind,
    TaskState,
    Timer,
    TimerState,
)
from .notify import holders_of, notify, seat
from .runtime import AFTER_COMPLETE, NEW_STEP, Actor, Fired, fire_timers, record

HISTORY_ACTION = {
    "reminder": "reminded",
    "overdue": "overdue",
    "urge": "urged",
    "escalate": "escalated",
}
EVENT = {"reminder": "due_soon", "overdue": "overdue", "urge": "urged", "escalate": "escalated"}
MAX_NOTE = 500


def _context(session: Session, task: HumanTask) -> dict[str, object]:
    root = session.get(Instance, task.instance.root_id) or task.instance
    return {
        "step": task.name,
        "unit": task.unit.name if task.unit else "",
        "item": root.business_key,
        "due": task.due_at.isoformat() if task.due_at else "",
        "task_id": task.id,
    }


def _office_director(session: Session, jurisdiction_id: int | None) -> list[int]:
    if jurisdiction_id is None:
        return []
    jurisdiction = session.get(Jurisdiction, jurisdiction_id)
    while jurisdiction is not None and jurisdiction.office_unit_id is None:
        jurisdiction = jurisdiction.parent
    if jurisdiction is None:
        return []
    director = seat(session, jurisdiction.office_unit_id, PositionKind.OFFICE_DIRECTOR)
    return holders_of(session, [director] if director else [])


def recipients(session: Session, task: HumanTask, kind: str) -> list[int]:
    """A step's own holders; for an escalation, its unit's head and the office director."""
    if kind == "escalate":
        head = seat(session, task.unit_id, PositionKind.HEAD)
        return holders_of(session, [head] if head else []) + _office_director(
            session, task.instance.jurisdiction_id
        )
    if task.account_id is not None:
        from .models import Account

        account = session.get(Account, task.account_id)
        return [account.person_id] if account else []
    return holders_of(session, [task.position_id] if task.position_id else [])


def _escalate(session: Session, instance_id: int, fired: Fired, now: datetime) -> int:
    """History and notices for one fired timer: one line per open step it watches."""
    steps = session.scalars(
        select(HumanTask).where(
            HumanTask.instance_id == instance_id,
            HumanTask.element_id == fired.host_element_id,
            HumanTask.state == TaskState.READY,
        )
    ).all()
    for task in steps:
        session.add(
            HistoryEntry(
                instance_id=instance_id,
                human_task_id=task.id,
                action=HISTORY_ACTION[fired.kind],
                actor_label="system",
                data={"timer": fired.element_id},
                at=now,
            )
        )
        notify(
            session,
            recipients(session, task, fired.kind),
            EVENT[fired.kind],
            _context(session, task),
            f"/tasks/{task.id}",
            now,
        )
    return len(steps)


@dataclass
class SweepResult:
    instances: int = 0
    fired: int = 0


SWEEP_BATCH = 100


def sweep(factory: sessionmaker[Session], now: datetime, limit: int = 10_000) -> SweepResult:
    """Fire every timer due by `now`, one instance per transaction. Two schedulers may sweep
    at once: each reads instances with a due timer through the due-timer index, then takes each
    one that nobody holds (SKIP LOCKED on the instance row, the same lock a step's completion
    takes), so timer rows are only ever written under their instance's lock and a firing
    happens once; SQLite runs one writer at a time. With nothing due, a sweep is one probe of
    that index, whatever the number of open steps."""
    result = SweepResult()
    due = (
        select(Timer.instance_id)
        .where(Timer.state == TimerState.WAITING, Timer.fire_at <= now)
        .order_by(Timer.fire_at)
        .limit(SWEEP_BATCH)
    )
    while result.instances < limit:
        with factory() as session:
            candidates = list(dict.fromkeys(session.scalars(due)))
        if not candidates:
            return result
        progressed = False
        for instance_id in candidates[: limit - result.instances]:
            with factory.begin() as session:
                if _sweep_instance(session, instance_id, now, result):
                    result.instances += 1
                    progressed = True
        if not progressed:  # every candidate is held by another sweeper, which will finish it
            return result
    return result


def _sweep_instance(session: Session, instance_id: int, now: datetime, result: SweepResult) -> bool:
    """Fire one instance's due timers, unless another sweeper holds it or got there first."""
    held = session.scalar(
        select(Instance.id).where(Instance.id == instance_id).with_for_update(skip_locked=True)
    )
    if held is None:
        return False
    fired = fire_timers(session, instance_id, now)
    for one in fired:
        result.fired += _escalate(session, instance_id, one, now)
    # Rows the workflow no longer explains (their step went away under them) are closed, so
    # the sweep never spins on them.
    closed = cast(
        "CursorResult[Any]",
        session.execute(
            update(Timer)
            .where(
                Timer.instance_id == instance_id,
                Timer.state == TimerState.WAITING,
                Timer.fire_at <= now,
            )
            .values(state=TimerState.DONE)
        ),
    ).rowcount
    return bool(fired) or closed > 0


def remind(session: Session, task: HumanTask, actor: Actor, note: str, now: datetime) -> None:
    """催办 by hand: the office reminds a step's holders; the history records who and why."""
    if task.state != TaskState.READY:
        raise PermissionDenied(f"step {task.id} ({task.name}) is not open")
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise FormError({"note": f"is longer than {MAX_NOTE} characters"})
    record(session, task, "urged", now, actor, {"note": note} if note else None)
    notify(
        session,
        recipients(session, task, "urge"),
        "urged",
        {**_context(session, task), "note": note, "by": actor.label},
        f"/tasks/{task.id}",
        now,
    )
    session.flush()


# --- who is told when work moves --------------------------------------------------------------


def _new_step(session: Session, instance: Instance, task: HumanTask, now: datetime) -> None:
    event = "minutes_to_review" if task.form == "minutes_review" else "task_assigned"
    link = f"/tasks/{task.id}"
    if task.position_id is None:  # an applicant's own step
        people = recipients(session, task, "assigned")
        if people:
            notify(session, people, event, _context(session, task), link, now)
        return
    # Whoever holds the seat as the step commits (a vacant seat: its work waits in the inbox
    # for whoever takes it); the seat's holders and the unit are read with the transaction's
    # other notices (engine.notify).
    notify(
        session,
        [],
        event,
        lambda: _context(session, task),
        link,
        now,
        seat=task.position_id,
        unit_id=task.unit_id,
    )


def _sent_back(session: Session, instance: Instance, task: HumanTask, now: datetime) -> None:
    if (task.form_data or {}).get("decision") != "send_back":
        return
    for step in session.scalars(
        select(HumanTask).where(
            HumanTask.instance_id == instance.id,
            HumanTask.form == "consolidate",
            HumanTask.state == TaskState.READY,
        )
    ):
        context = {**_context(session, step), "reason": (task.form_data or {}).get("reason", "")}
        notify(
            session,
            recipients(session, step, "sent_back"),
            "sent_back",
            context,
            f"/tasks/{step.id}",
            now,
        )


def _extension_decided(
    session: Session, instance: Instance, task: HumanTask, now: datetime
) -> None:
    data = task.form_data or {}
    for step in session.scalars(
        select(HumanTask).where(
            HumanTask.instance_id == instance.id, HumanTask.state == TaskState.READY
        )
    ):
        context = {
            **_context(session, step),
            "approved": bool(data.get("approved")),
            "new_due": data.get("new_due") or "",
        }
        notify(
            session,
            recipients(session, step, "extension"),
            "extension_decided",
            context,
            f"/tasks/{step.id}",
            now,
        )


NEW_STEP.append(_new_step)
AFTER_COMPLETE["review"] = _sent_back
AFTER_COMPLETE["decide_extension"] = _extension_decided
