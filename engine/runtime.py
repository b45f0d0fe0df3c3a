"""Running instances: start one, complete a human step. Every call is one unit of work inside
the caller's transaction: lock the instance, load its state onto the cached spec, run, mirror the
human tasks, save. The caller commits (route, CLI command, scheduler job) or rolls back.

The rows a step writes (the step, its history line, new steps, timers, the instance's state)
are written with Core statements, not through the ORM's unit of work, which cost more than
SpiffWorkflow itself per step; the ORM objects the hooks receive are kept in step with
`set_committed_value`, so they never turn dirty and are never written twice."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, cast
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import WorkflowException
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState as SpiffState
from sqlalchemy import (
    Connection,
    DateTime,
    Integer,
    String,
    Table,
    bindparam,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeEngine

from .clock import end_of_local_day, local_today
from .direct import Direct, defer, defer_many, execute, rows, rows_each
from .directory import HOLDS, holds
from .errors import Conflict, DubanError, NotFound, PermissionDenied
from .forms import FORMS, validate
from .loaded import as_loaded, loaded, set_loaded
from .models import (
    DeferredStart,
    HistoryEntry,
    HumanTask,
    Instance,
    InstanceStatus,
    PlanTask,
    PlanTaskUnit,
    Position,
    PositionKind,
    ProcessVersion,
    TaskState,
    Timer,
    TimerKind,
    TimerState,
    Unit,
)
from .specs import SERIALIZER_VERSION, SPEC_CACHE, Specs, dump_state, load_state, new_workflow
from .timing import Rules, rules_for, running_at
from .workflow_cache import WORKFLOWS, Saved

_HISTORY = cast(Table, HistoryEntry.__table__)
_HUMAN = cast(Table, HumanTask.__table__)
_INSTANCE = cast(Table, Instance.__table__)
_TIMER = cast(Table, Timer.__table__)
_POSITION = cast(Table, Position.__table__)

# The statements every step runs, built once: building and cache-keying a statement costs
# more CPU than executing it.
# The writes go to the driver directly (engine.direct).
_ADD_HISTORY = Direct(insert(_HISTORY))
_ADD_STEP = Direct(insert(_HUMAN).returning(_HUMAN.c.id))
_ADD_STEP_WITH_ID = Direct(insert(_HUMAN))
_ADD_INSTANCE = Direct(insert(_INSTANCE).returning(_INSTANCE.c.id))
_ADD_INSTANCE_WITH_ID = Direct(insert(_INSTANCE))
_ADD_TIMERS = Direct(insert(_TIMER))
_FINISH_STEP = Direct(update(_HUMAN).where(_HUMAN.c.id == bindparam("step_id")))
_SAVE_INSTANCE = Direct(
    update(_INSTANCE)
    .where(
        _INSTANCE.c.id == bindparam("instance_id"),
        _INSTANCE.c.revision == bindparam("old_revision"),
    )
    .values(revision=_INSTANCE.c.revision + 1)
)
# Reads whose rows need no conversion (ids, a status compared as text) go direct as well.
_ITEM_POSITIONS = Direct(  # one unit's position of a kind, and those of the item's other units
    select(_POSITION.c.unit_id, _POSITION.c.id).where(
        _POSITION.c.kind == bindparam("kind"),
        or_(
            _POSITION.c.unit_id == bindparam("unit_id"),
            _POSITION.c.unit_id.in_(
                select(PlanTaskUnit.unit_id).where(PlanTaskUnit.plan_task_id == bindparam("item"))
            ),
        ),
    )
)
_LOCK_INSTANCE_ROW = Direct(
    select(_INSTANCE.c.id).where(_INSTANCE.c.id == bindparam("instance_id")).with_for_update()
)
_RUNNING_SIBLING = Direct(
    select(_INSTANCE.c.id)
    .where(
        _INSTANCE.c.parent_id == bindparam("parent_id"),
        _INSTANCE.c.parent_element_id == bindparam("element_id"),
        _INSTANCE.c.status == InstanceStatus.RUNNING,
    )
    .limit(1)
)
_LOCK_INSTANCE = Direct(
    select(_INSTANCE).where(_INSTANCE.c.id == bindparam("instance_id")).with_for_update()
)
_CHILDREN = Direct(
    select(_INSTANCE.c.parent_task_id, _INSTANCE.c.id, _INSTANCE.c.status).where(
        _INSTANCE.c.parent_id == bindparam("parent_id")
    )
)
_TIMER_DONE = Direct(
    update(_TIMER)
    .where(
        _TIMER.c.spiff_task_id == bindparam("spiff_id"),
        _TIMER.c.state == TimerState.WAITING,
    )
    .values(state=TimerState.DONE)
)
# On PostgreSQL a step's timers are added and closed with one statement each, the rows as
# arrays: every human step has four boundary timers, so a step that hands out a dozen branches
# otherwise sends a hundred single-row statements, each costing the server an execution.
_TIMER_COLUMNS: dict[str, TypeEngine[Any]] = {
    "instance_id": Integer(),
    "spiff_task_id": String(),
    "element_id": String(),
    "host_element_id": String(),
    "kind": String(),
    "fire_at": DateTime(timezone=True),
    "state": String(),
    "fired": Integer(),
}
_TIMER_ROWS = (
    func.unnest(*(bindparam(name, type_=ARRAY(kind)) for name, kind in _TIMER_COLUMNS.items()))
    .table_valued(*_TIMER_COLUMNS)
    .render_derived()
)
_ADD_TIMER_ARRAYS = Direct(insert(_TIMER).from_select(list(_TIMER_COLUMNS), select(*_TIMER_ROWS.c)))
_TIMERS_DONE = Direct(
    update(_TIMER)
    .where(
        _TIMER.c.spiff_task_id == func.any(bindparam("spiff_ids", type_=ARRAY(String()))),
        _TIMER.c.state == TimerState.WAITING,
    )
    .values(state=TimerState.DONE)
)
_TIMER_MOVED = Direct(
    update(_TIMER)
    .where(_TIMER.c.spiff_task_id == bindparam("spiff_id"))
    .values(fired=_TIMER.c.fired + 1)
)


class ProcessError(DubanError):
    """The process itself misbehaved at run time (a bad property, a failing script)."""


@dataclass(frozen=True)
class Actor:
    """Who acts: for a position (`person_id` is None for an operator at the CLI), or, on an
    applicant's own step, as the applicant's account (`position_id` None)."""

    position_id: int | None
    person_id: int | None = None
    label: str = ""
    account_id: int | None = None


@dataclass(frozen=True)
class _Step:
    """A step known only by its id (a history line about a step the process cancelled)."""

    id: int


# Per process id: called after every save of an instance of that process, in the same
# transaction, so a domain table kept beside the workflow (an application's status) never
# disagrees with it.
SaveHook = Callable[[Session, "Instance", BpmnWorkflow, datetime], None]
ON_SAVE: dict[str, SaveHook] = {}
# Per form: called after a step with that form was completed, in the same transaction
# (engine.escalation tells the lead unit it was sent back, a branch its extension decision).
CompleteHook = Callable[[Session, "Instance", "HumanTask", datetime], None]
AFTER_COMPLETE: dict[str, CompleteHook] = {}
# Called for every new human step, after it has its row (engine.escalation: task assigned).
NEW_STEP: list[CompleteHook] = []
# Called after every completed step (engine.stats counts it for the dashboard).
COMPLETED: list[CompleteHook] = []


def _specs(session: Session, version_id: int) -> Specs:
    def load() -> dict[str, Any]:
        version = session.get(ProcessVersion, version_id)
        assert version is not None
        return version.spec

    return SPEC_CACHE.get(version_id, load)


def _history(
    session: Session,
    instance: Instance,
    action: str,
    now: datetime,
    actor: Actor | None = None,
    task: HumanTask | _Step | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    defer(
        _conn(session),
        _ADD_HISTORY,
        {
            "instance_id": instance.id,
            "human_task_id": task.id if task is not None else None,
            "action": action,
            "actor_person_id": actor.person_id if actor else None,
            "actor_position_id": actor.position_id if actor else None,
            "actor_label": actor.label if actor else "system",
            "data": data,
            "at": now,
        },
    )


def _conn(session: Session) -> Connection:
    """The transaction's connection, for Core statements (no autoflush, no ORM bookkeeping)."""
    return session.connection()


def record(
    session: Session,
    task: HumanTask,
    action: str,
    now: datetime,
    actor: Actor | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """A history line about a step that is not a completion (a reminder, an unmasking ...)."""
    _history(session, task.instance, action, now, actor, task, data)


def last_completed(session: Session, instance_id: int | None, element_id: str) -> HumanTask | None:
    """The latest completion of a step of the instance (who signed, what was reported)."""
    return session.scalar(
        select(HumanTask)
        .where(
            HumanTask.instance_id == instance_id,
            HumanTask.element_id == element_id,
            HumanTask.state == TaskState.COMPLETED,
        )
        .order_by(HumanTask.id.desc())
        .limit(1)
    )


def _property(workflow: BpmnWorkflow, task: Task, name: str) -> Any:
    expr = task.task_spec.extensions.get("properties", {}).get(name)
    if expr is None:
        return None
    try:
        return workflow.script_engine.evaluate(task, expr)
    except Exception as exc:  # a deployed expression failed on this instance's data
        raise ProcessError(
            f"element '{task.task_spec.bpmn_id}': property '{name}' ({expr}) failed: {exc}"
        ) from exc


def _due_at(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    try:
        return end_of_local_day(date.fromisoformat(str(value)))
    except ValueError:
        raise ProcessError(f"due date {value!r} is not a date") from None


def _transaction_cache(session: Session, name: str) -> dict[Any, Any]:
    """Lookups that do not change within one transaction, kept for its length only."""
    cache: dict[Any, Any] = session.info.setdefault(f"duban.{name}", {})
    return cache


@event.listens_for(Session, "after_transaction_end")
def _forget_transaction_cache(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop("duban.positions", None)
        session.info.pop("duban.versions", None)
        session.info.pop("duban.rules", None)
        session.info.pop("duban.items", None)
        session.info.pop(_BUDGET, None)
        session.info.pop(_STEP_ID_POOL, None)
        session.info.pop(_SAVED, None)  # a rolled-back step's workflows are not kept


# Workflows saved in this transaction (instance id -> Saved), kept once it commits.
_SAVED = "duban.saved_workflows"


@event.listens_for(Session, "after_commit")
def _keep_saved_workflows(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the outer transaction may yet roll back
        return
    for instance_id, saved in session.info.pop(_SAVED, {}).items():
        WORKFLOWS.put(instance_id, saved)


def _keep(session: Session, instance: Instance, workflow: BpmnWorkflow, state: bytes) -> None:
    """Offer the workflow, as saved in `state`, to the next step once this one commits."""
    specs = _specs(session, instance.process_version_id)
    session.info.setdefault(_SAVED, {})[instance.id] = Saved(workflow, state, specs)


def _position_id(
    session: Session, task: Task, unit_id: Any, kind: Any, plan_task_id: int | None
) -> int:
    """The position of `kind` in the unit. For a step of a routed item the positions of that
    kind in all the item's units are read at once: a plan starting 13 branches reads one row
    set instead of 13 (a round trip each on PostgreSQL)."""
    cache = _transaction_cache(session, "positions")
    if (unit_id, kind) not in cache:
        found = rows(  # no item (plan_task_id None): the unit's own position only
            _conn(session),
            _ITEM_POSITIONS,
            {"unit_id": unit_id, "kind": kind, "item": plan_task_id},
        )
        for row in found:
            cache[(row["unit_id"], kind)] = row["id"]
        found = [row for row in found if row["unit_id"] == unit_id]
        if not found:
            raise ProcessError(
                f"element '{task.task_spec.bpmn_id}': unit {unit_id} has no position '{kind}'"
            )
        cache[(unit_id, kind)] = found[0]["id"]
    position_id: int = cache[(unit_id, kind)]
    return position_id


_ITEM_UNITS = Direct(
    select(PlanTask.plan_id, PlanTaskUnit.unit_id, PlanTaskUnit.role)
    .outerjoin(PlanTaskUnit, PlanTaskUnit.plan_task_id == PlanTask.id)
    .where(PlanTask.id == bindparam("item"))
)


def _item_units(session: Session, plan_task_id: int) -> tuple[int, dict[int, str]]:
    """An item's list and the role of each of its units (read once per transaction)."""
    cache = _transaction_cache(session, "items")
    if plan_task_id not in cache:
        units = rows(_conn(session), _ITEM_UNITS, {"item": plan_task_id})
        roles = {r["unit_id"]: r["role"].value for r in units if r["unit_id"] is not None}
        cache[plan_task_id] = (units[0]["plan_id"], roles)
    found: tuple[int, dict[int, str]] = cache[plan_task_id]
    return found


def _detached_process(task: Task) -> str | None:
    """A manual task naming a `process` runs as a child instance (see task_routing.bpmn)."""
    if type(task.task_spec).__name__ != "ManualTask":
        return None
    value = task.task_spec.extensions.get("properties", {}).get("process")
    return str(value) if value else None


def _tasks_in(workflow: BpmnWorkflow, state: int, in_order: bool = False) -> list[Task]:
    """The workflow's tasks in `state` (manual ones only for READY), in the tree's order if
    asked, as `get_tasks` finds them. `get_tasks` walks the whole tree, a dictionary lookup
    by UUID (hashed in Python) per parent and child: a tenth of a step's CPU went on it. The
    workflow's flat table of tasks is read instead, and only what is found is put in order.
    A workflow with subprocesses (none of duban's processes has one) is walked as before."""
    if workflow.subprocesses:
        manual = True if state == SpiffState.READY else None
        return list(workflow.get_tasks(state=state, manual=manual))
    manual_only = state == SpiffState.READY
    found = [
        t
        for t in workflow.tasks.values()
        if t.state & state and (t.task_spec.manual or not manual_only)
    ]
    if in_order and len(found) > 1:
        found.sort(key=_tree_position)
    return found


def _tree_position(task: Task) -> list[int]:
    """Where a task sits in the tree: its index among its parent's children, from the root."""
    path = []
    parent = task.parent
    while parent is not None:
        path.append(parent._children.index(task.id))
        task, parent = parent, parent.parent
    path.reverse()
    return path


def _human_ready(workflow: BpmnWorkflow) -> set[str]:
    """Ids of the ready human steps: after every change each of them has its `human_task` row."""
    return {
        str(t.id) for t in _tasks_in(workflow, SpiffState.READY) if _detached_process(t) is None
    }


def _sync(
    session: Session,
    instance: Instance,
    workflow: BpmnWorkflow,
    now: datetime,
    mirrored: set[str],
) -> None:
    """Mirror the workflow's ready manual tasks: human steps become `human_task` rows, detached
    calls become child instances. `mirrored` names the ready steps that already have an open
    row, so nothing is read back from the database unless a step went away (cancelled by the
    process). Tasks whose child has ended are run here and we go round again, so the workflow
    is left waiting only on people or running children."""
    mirrored = set(mirrored)
    while True:
        ready = {str(t.id): t for t in _tasks_in(workflow, SpiffState.READY, in_order=True)}
        detached = {i: t for i, t in ready.items() if _detached_process(t) is not None}
        gone = mirrored - ready.keys()
        if gone:
            _cancel_steps(session, instance, now, _HUMAN.c.spiff_task_id.in_(gone))
            mirrored -= gone
        finished = _sync_children(session, instance, workflow, detached, now)
        for spiff_id, task in ready.items():
            if spiff_id not in mirrored and spiff_id not in detached:
                row = _human_task(session, instance, workflow, task, now)
                mirrored.add(spiff_id)
                for hook in NEW_STEP:
                    hook(session, instance, row, now)
        if not finished:
            return
        _run_ended(workflow, finished)
        _run(workflow.do_engine_steps)


def _run_ended(workflow: BpmnWorkflow, tasks: list[Task]) -> None:
    """Run the tasks whose branches have ended. SpiffWorkflow re-examines every waiting task
    (a join counting its inputs among them) after each completion, which makes the last of N
    branches cost N²; held back until the last task runs, it is done once. Each task still
    updates its own successors as it completes, and the states reached are the same."""
    if len(tasks) > 1:
        workflow.update_waiting_tasks = lambda: None  # type: ignore[method-assign]
        try:
            for task in tasks[:-1]:
                _run(task.run)
        finally:
            del workflow.update_waiting_tasks
    for task in tasks[-1:]:
        _run(task.run)


def _human_task(
    session: Session,
    instance: Instance,
    workflow: BpmnWorkflow,
    task: Task,
    now: datetime,
) -> HumanTask:
    account_id = _property(workflow, task, "applicant")
    unit_id = position_id = None
    plan_id = role = None
    if account_id is None:
        unit_id = _property(workflow, task, "unit")
        kind = _property(workflow, task, "position")
        position_id = _position_id(session, task, unit_id, kind, instance.plan_task_id)
        if instance.plan_task_id is not None:
            plan_id, roles = _item_units(session, instance.plan_task_id)
            role = roles.get(unit_id, "office")
    values = {
        "plan_id": plan_id,
        "role": role,
        "instance_id": instance.id,
        "spiff_task_id": str(task.id),
        "element_id": task.task_spec.bpmn_id,
        "name": task.task_spec.bpmn_name or task.task_spec.bpmn_id,
        "form": task.task_spec.extensions["properties"]["form"],
        "unit_id": unit_id,
        "position_id": position_id,
        "account_id": account_id,
        "state": TaskState.READY,
        "due_at": _due_at(_property(workflow, task, "due")),
        "created_at": now,
    }
    pool: list[int] = session.info.get(_STEP_ID_POOL, [])
    if pool:  # an id taken beforehand (_branch_ids): the row goes with the next round trip
        values = {"id": pool.pop(0), **values}  # in the order the steps are made
        defer(_conn(session), _ADD_STEP_WITH_ID, values)
    else:
        values = {"id": execute(_conn(session), _ADD_STEP, values).fetchone()[0], **values}
    row: HumanTask = loaded(session, HumanTask, values)
    return row


def _close_steps(session: Session, instance: Instance, now: datetime, *which: Any) -> list[int]:
    """Cancel the instance's open steps (those matching `which`); returns their ids."""
    closed = (
        _conn(session)
        .scalars(
            update(_HUMAN)
            .where(_HUMAN.c.instance_id == instance.id, _HUMAN.c.state == TaskState.READY, *which)
            .values(state=TaskState.CANCELLED, completed_at=now)
            .returning(_HUMAN.c.id)
        )
        .all()
    )
    for step_id in closed:
        loaded = session.identity_map.get(session.identity_key(HumanTask, step_id))
        if loaded is not None:
            set_loaded(loaded, state=TaskState.CANCELLED, completed_at=now)
    return list(closed)


def _cancel_steps(session: Session, instance: Instance, now: datetime, which: Any) -> None:
    """Cancel the steps the process took away (matching `which`), each with its history line."""
    for step_id in _close_steps(session, instance, now, which):
        _history(session, instance, "cancelled", now, task=_Step(step_id))


def _sync_children(
    session: Session,
    instance: Instance,
    workflow: BpmnWorkflow,
    detached: dict[str, Task],
    now: datetime,
) -> list[Task]:
    """Spawn a child for each new detached task; return the tasks whose child has ended.
    Children are read as (id, status) only: their state is not needed here."""
    if not detached and not instance.has_children:
        return []
    children = {
        parent_task_id: (child_id, status)
        for parent_task_id, child_id, status in execute(
            _conn(session), _CHILDREN, {"parent_id": instance.id}
        ).fetchall()
    }
    # A running child whose task is gone (the process moved on without it) is cancelled.
    for parent_task_id, (child_id, status) in children.items():
        if parent_task_id not in detached and status == InstanceStatus.RUNNING:
            orphan = session.get(Instance, child_id)
            assert orphan is not None
            _cancel(session, orphan, now)
    new = [(spiff_id, task) for spiff_id, task in detached.items() if spiff_id not in children]
    budget: int | None = session.info.get(_BUDGET)
    if budget is None:  # a step: a few branches start with it, many after its commit
        budget = len(new) if len(new) <= SPAWN_INLINE else 0
    if len(new) > budget:
        _defer_start(session, instance, now)
    new = new[:budget]
    if _BUDGET in session.info:
        session.info[_BUDGET] = budget - len(new)
    ids = _branch_ids(session, len(new))
    for (spiff_id, task), child_id in zip(new, ids, strict=True):
        process_id = str(_detached_process(task))
        child = _spawn(session, instance, workflow, task, process_id, now, child_id)
        children[spiff_id] = (child.id, child.status)
    return [
        task
        for spiff_id, task in detached.items()
        if spiff_id in children and children[spiff_id][1] == InstanceStatus.COMPLETED
    ]


# Ids for a step's new branches, and for one human step each, at once on PostgreSQL: their
# INSERTs can then wait for the next round trip like any other write (engine.direct.defer)
# instead of costing one each to learn the new id. Elsewhere (SQLite, in-process) each INSERT
# returns it. A step id left unused is a gap in the sequence, as a rolled-back INSERT leaves.
def _ids_of(table: str) -> Direct:
    return Direct(
        select(func.nextval(func.pg_get_serial_sequence(table, "id")).label("id")).select_from(
            func.generate_series(1, bindparam("n"))
        )
    )


_INSTANCE_IDS, _STEP_IDS = _ids_of("instance"), _ids_of("human_task")
_STEP_ID_POOL = "duban.step_ids"


def _branch_ids(session: Session, n: int) -> list[int | None]:
    """Instance ids for `n` new branches (None: let each INSERT return its own), and as many
    step ids into the transaction's pool, which `_human_task` takes from first."""
    conn = _conn(session)
    if n < 2 or conn.dialect.name != "postgresql":
        return [None] * n
    found, steps = rows_each(conn, (_INSTANCE_IDS, {"n": n}), (_STEP_IDS, {"n": n}))
    session.info.setdefault(_STEP_ID_POOL, []).extend(row["id"] for row in steps)
    return [row["id"] for row in found]


# An element fanning out to more branches than this (129 counties, say) starts none of them in
# the step that reached it: that step stays short, and its branches are started after the
# commit, SPAWN_BATCH per transaction (start_deferred), by the scheduler's job or the command
# that made the step. The seed lists' items stay below it and start their branches at once.
# A branch costs ~5 ms to start, so a batch keeps its transaction (and the parent's lock)
# around 30 ms.
SPAWN_INLINE = 32
SPAWN_BATCH = 5
_BUDGET = "duban.spawn_budget"


def _defer_start(session: Session, instance: Instance, now: datetime) -> None:
    if session.get(DeferredStart, instance.id) is None:
        session.add(DeferredStart(instance_id=instance.id, since=now))
        session.flush()


def start_deferred(
    factory: sessionmaker[Session], now: datetime, batch: int = SPAWN_BATCH, limit: int = 100_000
) -> int:
    """Start the branches left to start after their step, one batch per transaction, until
    none are left (or `limit` are started); returns how many were started. Workers may run
    this at once: each takes a waiting instance nobody holds (SKIP LOCKED), then locks it."""
    started = 0
    while started < limit:
        with factory.begin() as session:
            instance_id = session.scalar(
                select(DeferredStart.instance_id)
                .order_by(DeferredStart.since, DeferredStart.instance_id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if instance_id is None:
                return started
            started += _start_batch(session, instance_id, now, batch)
    return started


def _start_batch(session: Session, instance_id: int, now: datetime, batch: int) -> int:
    instance = _lock_instance(session, instance_id)
    waiting = session.get(DeferredStart, instance_id)
    if instance.status != InstanceStatus.RUNNING:
        if waiting is not None:
            session.delete(waiting)
        return 0
    session.info[_BUDGET] = batch
    try:
        with running_at(now, _rules(session, instance)):
            workflow = _load_for_step(session, instance)
            _sync(session, instance, workflow, now, _human_ready(workflow))
            _save(session, instance, workflow, now)
    finally:
        left = session.info.pop(_BUDGET)
    if left > 0 and waiting is not None:  # the batch was not used up: every branch has started
        session.delete(waiting)
    session.flush()
    _resume_parent(session, instance, now)
    return int(batch - left)


def _spawn(
    session: Session,
    parent: Instance,
    workflow: BpmnWorkflow,
    task: Task,
    process_id: str,
    now: datetime,
    instance_id: int | None = None,
) -> Instance:
    inputs = _property(workflow, task, "inputs")
    if not isinstance(inputs, dict):
        raise ProcessError(f"element '{task.task_spec.bpmn_id}': inputs must be a mapping")
    set_loaded(parent, has_children=True)  # written with the parent's state
    return start_instance(
        session,
        process_id,
        inputs,
        parent.business_key,
        now,
        plan_task_id=parent.plan_task_id,
        parent=parent,
        parent_task=task,
        instance_id=instance_id,
    )


def _cancel(session: Session, instance: Instance, now: datetime) -> None:
    revision = _conn(session).scalar(
        update(_INSTANCE)
        .where(_INSTANCE.c.id == instance.id)
        .values(
            status=InstanceStatus.CANCELLED, completed_at=now, revision=_INSTANCE.c.revision + 1
        )
        .returning(_INSTANCE.c.revision)
    )
    set_loaded(instance, status=InstanceStatus.CANCELLED, completed_at=now, revision=revision)
    _close_steps(session, instance, now)
    for _task_id, child_id, status in execute(
        _conn(session), _CHILDREN, {"parent_id": instance.id}
    ).fetchall():
        child = session.get(Instance, child_id) if status == InstanceStatus.RUNNING else None
        if child is not None:
            _cancel(session, child, now)
    _history(session, instance, "cancelled", now)


def _resume_parent(session: Session, child: Instance, now: datetime) -> None:
    """A child ended. Its parent moves on once every sibling spawned by the same element has
    ended too: until then the parent is only locked (so the last sibling cannot miss that it
    is last), not loaded. Parallel branches leave no order to keep, so this changes nothing
    but the cost."""
    while child.parent_id is not None and child.status == InstanceStatus.COMPLETED:
        # Lock the row only; the parent's state is read just when this was the last sibling.
        siblings = {"parent_id": child.parent_id, "element_id": child.parent_element_id}
        _locked, running = rows_each(  # one round trip on PostgreSQL, the lock first
            _conn(session),
            (_LOCK_INSTANCE_ROW, {"instance_id": child.parent_id}),
            (_RUNNING_SIBLING, siblings),
        )
        if running:
            return
        parent = _lock_instance(session, child.parent_id)
        with running_at(now, _rules(session, parent)):
            workflow = _load_for_step(session, parent)
            _sync(session, parent, workflow, now, _human_ready(workflow))
            _save(session, parent, workflow, now)
        child = parent


def waiting_timers(workflow: BpmnWorkflow) -> dict[str, tuple[str, str, str, datetime]]:
    """The workflow's waiting due-date timers: spiff task id -> (kind, element, host element,
    next fire time). Read from the task tree; nothing is evaluated here."""
    found = {}
    for task in _tasks_in(workflow, SpiffState.WAITING):
        spec = task.task_spec
        if not hasattr(spec, "event_definition"):
            continue
        kind = spec.extensions.get("properties", {}).get("escalation")
        value = task._get_internal_data("event_value")
        if isinstance(value, dict):  # a repeating timer: its next firing, while cycles remain
            value = value.get("next") if value.get("cycles", 0) != 0 else None
        if not kind or value is None:
            continue
        host = next(
            (
                c.task_spec.bpmn_id
                for c in task.parent.children
                if not hasattr(c.task_spec, "event_definition")
            ),
            "",
        )
        found[str(task.id)] = (kind, spec.bpmn_id, host or "", datetime.fromisoformat(value))
    return found


def _mirror_timers(session: Session, instance: Instance, workflow: BpmnWorkflow) -> None:
    """Copy the waiting timers' fire times into `timer` (only what changed since the load)."""
    now_waiting = waiting_timers(workflow)
    before: dict[str, Any] = getattr(workflow, "duban_timers", {})
    if now_waiting == before:
        return
    gone = [i for i in before if i not in now_waiting]
    conn = _conn(session)
    new = [
        {
            "instance_id": instance.id,
            "spiff_task_id": spiff_id,
            "element_id": element,
            "host_element_id": host,
            "kind": TimerKind(kind),
            "fire_at": at,
            "state": TimerState.WAITING,
            "fired": 0,
        }
        for spiff_id, (kind, element, host, at) in now_waiting.items()
        if spiff_id not in before
    ]
    if conn.dialect.name == "postgresql":
        if gone:
            defer(conn, _TIMERS_DONE, {"spiff_ids": gone})
        if new:
            defer(conn, _ADD_TIMER_ARRAYS, _as_arrays(new))
    else:  # no round trips to save: a statement a row
        defer_many(conn, _TIMER_DONE, [{"spiff_id": spiff_id} for spiff_id in gone])
        defer_many(conn, _ADD_TIMERS, new)
    for spiff_id, (_kind, _element, _host, at) in now_waiting.items():
        if spiff_id in before and before[spiff_id][3] != at:
            defer(conn, _TIMER_MOVED, {"spiff_id": spiff_id, "fire_at": at})
    workflow.duban_timers = now_waiting  # type: ignore[attr-defined]


def _as_arrays(timers: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Timer rows as one array per column, values as stored (enum values, UTC times)."""
    return {
        "instance_id": [t["instance_id"] for t in timers],
        "spiff_task_id": [t["spiff_task_id"] for t in timers],
        "element_id": [t["element_id"] for t in timers],
        "host_element_id": [t["host_element_id"] for t in timers],
        "kind": [t["kind"].value for t in timers],
        "fire_at": [t["fire_at"].astimezone(UTC) for t in timers],
        "state": [t["state"].value for t in timers],
        "fired": [t["fired"] for t in timers],
    }


def _save(session: Session, instance: Instance, workflow: BpmnWorkflow, now: datetime) -> None:
    _mirror_timers(session, instance, workflow)
    if session.is_modified(instance):  # changed through the ORM by a caller: write that first
        session.flush([instance])
    state = dump_state(workflow)
    values: dict[str, Any] = {
        "state": state,
        "serializer_version": SERIALIZER_VERSION,
        "updated_at": now,
        "has_children": instance.has_children,
        "root_id": instance.root_id,
    }
    if workflow.is_completed():
        values |= {"status": InstanceStatus.COMPLETED, "completed_at": now}

    # The instance is locked, so the revision cannot have moved: the check guards the lock.
    def saved(rowcount: int, instance_id: int = instance.id) -> None:
        if rowcount != 1:
            raise Conflict(f"instance {instance_id} was changed by someone else; nothing was saved")

    defer(
        _conn(session),
        _SAVE_INSTANCE,
        {"instance_id": instance.id, "old_revision": instance.revision, **values},
        saved,
    )
    set_loaded(instance, revision=instance.revision + 1, **values)
    _keep(session, instance, workflow, state)
    hook = ON_SAVE.get(instance.process_id)
    if hook is not None:
        hook(session, instance, workflow, now)


def _run(action: Any) -> None:
    try:
        action()
    except WorkflowException as exc:
        raise ProcessError(str(exc)) from exc


class VersionRef(NamedTuple):
    id: int
    version: int


# Only the version's id and number: its row also holds the sources and the parsed spec (tens of
# kilobytes of JSON), which the spec cache already has.
_LATEST_VERSION = Direct(
    select(ProcessVersion.id, ProcessVersion.version)
    .where(ProcessVersion.process_id == bindparam("process_id"))
    .order_by(ProcessVersion.version.desc())
    .limit(1)
)


def start_instance(
    session: Session,
    process_id: str,
    data: dict[str, Any],
    business_key: str,
    now: datetime,
    plan_task_id: int | None = None,
    actor: Actor | None = None,
    parent: Instance | None = None,
    parent_task: Task | None = None,
    jurisdiction_id: int | None = None,
    instance_id: int | None = None,
) -> Instance:
    """Start the latest version of `process_id` with `data` as its start data (as a child of
    `parent` when it runs one branch of it). `jurisdiction_id` says whose escalation rules
    apply; a child inherits its parent's. `instance_id`: an id already taken from the
    instance sequence (PostgreSQL) for it."""
    versions = _transaction_cache(session, "versions")
    if process_id not in versions:
        found = execute(_conn(session), _LATEST_VERSION, {"process_id": process_id}).fetchone()
        versions[process_id] = VersionRef(*found) if found else None
    version: VersionRef | None = versions[process_id]
    if version is None:
        raise NotFound(f"process '{process_id}' is not deployed")
    if parent is None:
        exists = session.scalar(
            select(Instance.id).where(
                Instance.process_id == process_id,
                Instance.business_key == business_key,
                Instance.parent_id.is_(None),
            )
        )
        if exists is not None:
            raise Conflict(f"{process_id} '{business_key}' was already started (instance {exists})")
    if jurisdiction_id is None and parent is not None:
        jurisdiction_id = parent.jurisdiction_id
    with running_at(now, lambda: rules_for(session, jurisdiction_id, process_id)):
        return _start(
            session,
            version,
            process_id,
            data,
            business_key,
            now,
            plan_task_id,
            actor,
            parent,
            parent_task,
            jurisdiction_id,
            instance_id,
        )


def _start(
    session: Session,
    version: VersionRef,
    process_id: str,
    data: dict[str, Any],
    business_key: str,
    now: datetime,
    plan_task_id: int | None,
    actor: Actor | None,
    parent: Instance | None,
    parent_task: Task | None,
    jurisdiction_id: int | None,
    instance_id: int | None,
) -> Instance:
    workflow = new_workflow(_specs(session, version.id))
    workflow.get_tasks(state=SpiffState.READY)[0].set_data(**data)
    _run(workflow.do_engine_steps)
    values: dict[str, Any] = {
        "jurisdiction_id": jurisdiction_id,
        "process_version_id": version.id,
        "process_id": process_id,
        "business_key": business_key,
        "plan_task_id": plan_task_id,
        "status": InstanceStatus.RUNNING,
        "state": b"",  # written by _save below, once the new steps and children exist
        "serializer_version": SERIALIZER_VERSION,
        "revision": 1,
        "has_children": False,
        "created_at": now,
        "updated_at": now,
        "completed_at": None,
        "parent_id": parent.id if parent else None,
        "root_id": parent.root_id if parent else None,
        "parent_task_id": str(parent_task.id) if parent_task else None,
        "parent_element_id": parent_task.task_spec.bpmn_id if parent_task else None,
    }
    if instance_id is None:
        instance_id = execute(_conn(session), _ADD_INSTANCE, values).fetchone()[0]
    else:  # its id taken beforehand: the row goes with the next round trip
        defer(_conn(session), _ADD_INSTANCE_WITH_ID, {"id": instance_id, **values})
    instance: Instance = loaded(session, Instance, {"id": instance_id, **values})
    if parent is None:
        set_loaded(instance, root_id=instance_id)  # a top-level instance is its own root
    _history(session, instance, "started", now, actor, data={"version": version.version})
    _sync(session, instance, workflow, now, mirrored=set())
    _save(session, instance, workflow, now)
    return instance


def element_properties(session: Session, instance: Instance, element_id: str) -> dict[str, str]:
    """The spiffworkflow properties of one element of the instance's process version."""
    spec, subprocesses = _specs(session, instance.process_version_id)
    for process in (spec, *subprocesses.values()):
        task_spec = process.task_specs.get(element_id)
        if task_spec is not None:
            return dict(task_spec.extensions.get("properties", {}))
    return {}


@dataclass(frozen=True)
class Fired:
    kind: str  # reminder | overdue | urge | escalate
    element_id: str  # the boundary event
    host_element_id: str  # the step it is attached to


def fire_timers(session: Session, instance_id: int, now: datetime) -> list[Fired]:
    """Let the instance's due timers fire as of `now`, in the caller's transaction: lock the
    instance, run SpiffWorkflow's timers at that instant, mirror, save. Idempotent: a timer
    that has fired is no longer waiting, so a second call (another scheduler, a restart after a
    crash) finds nothing to do."""
    instance = _lock_instance(session, instance_id)
    if instance.status != InstanceStatus.RUNNING:
        session.execute(
            update(Timer)
            .where(Timer.instance_id == instance.id, Timer.state == TimerState.WAITING)
            .values(state=TimerState.DONE)
        )
        return []
    with running_at(now, _rules(session, instance)):
        workflow = _load_for_step(session, instance)
        before = dict(workflow.duban_timers)  # type: ignore[attr-defined]
        due = {i: t for i, t in before.items() if t[3] <= now}
        if not due:
            _keep(session, instance, workflow, instance.state)  # unchanged
            return []
        mirrored = _human_ready(workflow)
        workflow.refresh_timers()
        _run(workflow.do_engine_steps)
        after = waiting_timers(workflow)
        fired = []
        for spiff_id, (kind, element, host, at) in due.items():
            if spiff_id not in after:
                fired.append(Fired(kind, element, host))
            elif after[spiff_id][3] > at:
                # A repeating timer moved on (after downtime perhaps by several cadences):
                # one reminder now, not a burst.
                fired.append(Fired(kind, element, host))
        _sync(session, instance, workflow, now, mirrored)
        _save(session, instance, workflow, now)
    session.flush()
    return fired


def cancel_instance(
    session: Session, instance_id: int, actor: Actor, now: datetime, reason: str = ""
) -> Instance:
    """End a running instance and its branches: open steps are cancelled, history says who."""
    instance = _lock_instance(session, instance_id)
    if instance.status != InstanceStatus.RUNNING:
        raise Conflict(f"instance {instance_id} is already {instance.status.value}")
    _cancel(session, instance, now)
    _history(
        session, instance, "withdrawn", now, actor, data={"reason": reason} if reason else None
    )
    session.flush()
    return instance


def load_workflow(session: Session, instance: Instance) -> BpmnWorkflow:
    """The instance's workflow rebuilt from its stored state (to read, or to run in a step)."""
    workflow = load_state(instance.state, _specs(session, instance.process_version_id))
    workflow.duban_timers = waiting_timers(workflow)  # type: ignore[attr-defined]
    return workflow


def _load_for_step(session: Session, instance: Instance) -> BpmnWorkflow:
    """The locked instance's workflow, to run: the one this process saved as the row's current
    state if it still has it (engine.workflow_cache), else rebuilt from the row."""
    specs = _specs(session, instance.process_version_id)
    workflow = WORKFLOWS.take(instance.id, instance.state, specs)
    return workflow if workflow is not None else load_workflow(session, instance)


def _rules(session: Session, instance: Instance) -> Callable[[], Rules]:
    """The instance's escalation rules, read only if one of its timers is evaluated."""
    jurisdiction_id, process_id = instance.jurisdiction_id, instance.process_id
    return lambda: rules_for(session, jurisdiction_id, process_id)


def may_act(session: Session, actor: Actor, task: HumanTask, held: bool | None = None) -> bool:
    """Whether the actor may complete the step. `held`: whether the actor's person holds the
    actor's position, if the caller has read it already (else it is read here)."""
    if task.account_id is not None:  # an applicant's own step: theirs alone
        return actor.account_id == task.account_id
    if actor.position_id is None or task.position is None:
        return False
    position = (
        task.position
        if actor.position_id == task.position_id
        else session.get(Position, actor.position_id)
    )
    if position is None or position.unit_id != task.unit_id:
        return False
    # Either way position.id is actor.position_id: has the person that seat?
    if actor.person_id is not None and not (
        held if held is not None else holds(session, actor.person_id, position.id)
    ):
        return False
    if position.id == task.position_id:
        return True
    # The office director may take any step of the office's staff.
    return (
        position.kind == PositionKind.OFFICE_DIRECTOR
        and task.position.kind == PositionKind.OFFICE_STAFF
    )


def _lock_instance(session: Session, instance_id: int) -> Instance:
    """Row-lock the instance and re-read it: whoever held the lock before us has committed."""
    session.flush()  # what the caller changed through the ORM is written before we read
    (row,) = rows(_conn(session), _LOCK_INSTANCE, {"instance_id": instance_id})
    instance: Instance = as_loaded(session, Instance, row)
    return instance


_LOCK_STEP_INSTANCE = Direct(
    select(_INSTANCE)
    .join(_HUMAN, _HUMAN.c.instance_id == _INSTANCE.c.id)
    .where(_HUMAN.c.id == bindparam("step_id"))
    .with_for_update(of=_INSTANCE)
)
_UNIT = cast(Table, Unit.__table__)
# The step with its position (who may act is decided from it) and unit, in one statement.
_READ_STEP = Direct(
    select(
        _HUMAN,
        *(c.label(f"seat__{c.key}") for c in _POSITION.c),
        *(c.label(f"unit__{c.key}") for c in _UNIT.c),
    )
    .outerjoin(_POSITION, _POSITION.c.id == _HUMAN.c.position_id)
    .outerjoin(_UNIT, _UNIT.c.id == _HUMAN.c.unit_id)
    .where(_HUMAN.c.id == bindparam("step_id"))
)


def read_step(session: Session, task_id: int) -> HumanTask | None:
    """The step with its position and unit loaded, in one statement (engine.direct)."""
    session.flush()  # what the caller changed through the ORM is written before we read
    found = rows(_conn(session), _READ_STEP, {"step_id": task_id})
    return _step_with_seat(session, found[0]) if found else None


def _step_with_seat(session: Session, row: dict[str, Any]) -> HumanTask:
    step, seat, unit = {}, {}, {}
    for key, value in row.items():
        if key.startswith("seat__"):
            seat[key[6:]] = value
        elif key.startswith("unit__"):
            unit[key[6:]] = value
        else:
            step[key] = value
    task: HumanTask = as_loaded(session, HumanTask, step)
    set_loaded(
        task,
        position=as_loaded(session, Position, seat) if seat["id"] is not None else None,
        unit=as_loaded(session, Unit, unit) if unit["id"] is not None else None,
    )
    return task


def _lock(session: Session, task_id: int, actor: Actor) -> tuple[Instance, HumanTask, bool]:
    """Lock the step's instance (found through the step in the same statement), then read the
    step as it is now that whoever held the lock before us has committed, and whether the
    actor (a person) holds the position they act in; one round trip on PostgreSQL."""
    session.flush()  # what the caller changed through the ORM is written before we read
    step = {"step_id": task_id}
    reads = [(_LOCK_STEP_INSTANCE, step), (_READ_STEP, step)]
    if actor.person_id is not None and actor.position_id is not None:
        reads.append((HOLDS, {"person_id": actor.person_id, "position_id": actor.position_id}))
    found, steps, *held = rows_each(_conn(session), *reads)
    if not found or not steps:
        raise NotFound(f"no step {task_id}")
    instance: Instance = as_loaded(session, Instance, found[0])
    return instance, _step_with_seat(session, steps[0]), bool(held and held[0])


def complete_task(
    session: Session, task_id: int, actor: Actor, data: dict[str, Any], now: datetime
) -> HumanTask:
    """Complete one human step with the submitted form data and move the instance on."""
    instance, task, held = _lock(session, task_id, actor)
    if not may_act(session, actor, task, held):
        raise PermissionDenied(
            f"step {task.id} belongs to {owner(session, task)}; you may not act on it"
        )
    if task.state != TaskState.READY:
        raise Conflict(
            f"step {task.id} ({task.name}) is already {task.state.value}; nothing was changed"
        )
    clean = validate(FORMS[task.form], data, local_today(now))
    with running_at(now, _rules(session, instance)):
        _complete(session, instance, task, actor, clean, now)
    return task


def _complete(
    session: Session,
    instance: Instance,
    task: HumanTask,
    actor: Actor,
    clean: dict[str, Any],
    now: datetime,
) -> None:
    workflow = _load_for_step(session, instance)
    spiff_task = workflow.get_task_from_id(UUID(task.spiff_task_id))
    if spiff_task.state != SpiffState.READY:
        raise Conflict(f"step {task.id} ({task.name}) is no longer ready in the process")
    mirrored = _human_ready(workflow) - {task.spiff_task_id}
    spiff_task.set_data(**clean)
    _run(spiff_task.run)
    _run(workflow.do_engine_steps)
    done = {
        "state": TaskState.COMPLETED,
        "completed_at": now,
        "completed_by_id": actor.person_id,
        "form_data": clean,
    }
    defer(_conn(session), _FINISH_STEP, {"step_id": task.id, **done})
    set_loaded(task, **done)
    _history(
        session, instance, "completed", now, actor, task, {"element": task.element_id, **clean}
    )
    _sync(session, instance, workflow, now, mirrored)
    _save(session, instance, workflow, now)
    _resume_parent(session, instance, now)
    hook = AFTER_COMPLETE.get(task.form)
    if hook is not None:
        hook(session, instance, task, now)
    for counted in COMPLETED:
        counted(session, instance, task, now)


def owner(session: Session, task: HumanTask) -> str:
    """Whose step this is, in words for an error message."""
    if task.account_id is not None:
        return "the applicant"
    unit = session.get(Unit, task.unit_id)
    title = task.position.title if task.position else "?"
    return f"{unit.name if unit else '?'} ({title})"


def claim_task(session: Session, task_id: int, actor: Actor, now: datetime) -> HumanTask:
    """Record that a holder of the position has taken the step up (it stays the position's)."""
    instance, task, held = _lock(session, task_id, actor)
    if actor.person_id is None or not may_act(session, actor, task, held):
        raise PermissionDenied(f"step {task.id} cannot be claimed by this position")
    if task.state != TaskState.READY:
        raise Conflict(f"step {task.id} ({task.name}) is already {task.state.value}")
    task.claimed_at, task.claimed_by_id = now, actor.person_id
    _history(session, instance, "claimed", now, actor, task)
    session.flush()
    return task


def open_tasks(session: Session, unit_ids: list[int] | None = None) -> list[HumanTask]:
    query = select(HumanTask).where(HumanTask.state == TaskState.READY)
    if unit_ids is not None:
        query = query.where(HumanTask.unit_id.in_(unit_ids))
    return list(
        session.scalars(query.order_by(HumanTask.due_at.is_(None), HumanTask.due_at, HumanTask.id))
    )


def history(session: Session, instance_id: int) -> list[HistoryEntry]:
    """Everything that happened to an instance and its branches, in order."""
    tree = select(Instance.id).where(Instance.root_id == instance_id)
    return list(
        session.scalars(
            select(HistoryEntry).where(HistoryEntry.instance_id.in_(tree)).order_by(HistoryEntry.id)
        )
    )
