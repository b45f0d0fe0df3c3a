"""Throughput of one human step of `task_routing`: raw SpiffWorkflow against duban persisted.

Each routed item has 1 lead, 3 supporting and 10 implementing units, i.e. 30 human steps
(14 acknowledge, 1 plan, 3 contribute, 10 final reports, 1 consolidate, 1 review), spread over
the item's top-level instance and the branch instances its detached calls start. Variants:

* raw state-only: SpiffWorkflow in memory, state-only load/dump (engine.specs) around each use;
* raw full blob: the same with SpiffWorkflow's own serialize_json/deserialize_json (spec included);
* duban SQLite / PostgreSQL: engine.runtime.complete_task, one transaction per completion.

Usage: .venv/bin/python bench/bench_engine.py [--out FILE] [--json FILE] [--postgres URL]
       [--instances N] [--processes DIR] [--no-profile]
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any
from uuid import UUID

from machine import load_average, machine_lines  # bench/machine.py (run as a script)
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState as SpiffState
from sqlalchemy import Engine, bindparam, create_engine, event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import local_today, utcnow
from engine.db import make_engine, scratch_schema, session_factory, upgrade
from engine.deploy import deploy_directory
from engine.direct import Direct, rows
from engine.directory import ensure_position
from engine.forms import FORMS, validate
from engine.models import (
    HumanTask,
    Instance,
    InstanceStatus,
    Jurisdiction,
    Level,
    Plan,
    PlanTask,
    PlanTaskUnit,
    PositionKind,
    Role,
    TaskState,
    Unit,
    UnitKind,
)
from engine.routing import hand_out
from engine.runtime import Actor, complete_task
from engine.specs import (
    SCRIPT_ENGINE,
    SPEC_CACHE,
    Specs,
    dump_state,
    load_state,
    new_parser,
    new_workflow,
    specs_from_dict,
    specs_to_dict,
)

ROOT = Path(__file__).resolve().parent.parent
PROCESS_ID = "task_routing"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPETITIONS = 5
SUPPORT_UNITS = 3
IMPLEMENT_UNITS = 10
STEPS_PER_ITEM = 1 + SUPPORT_UNITS + IMPLEMENT_UNITS + 1 + SUPPORT_UNITS + IMPLEMENT_UNITS + 2
PLAN_KEY = "bench"
RAW_STATE_ONLY = "raw SpiffWorkflow, state-only (engine.specs)"


# --- inputs ------------------------------------------------------------------------------------


def form_data(today: date) -> dict[str, dict[str, Any]]:
    """What a user submits for each form (duban validates and fills defaults)."""
    due = (today + timedelta(days=30)).isoformat()
    return {
        "acknowledge": {},
        "plan": {"plan": "按月推进", "support_due": due, "implement_due": due, "final_due": due},
        "contribute": {"content": "配合材料"},
        "report": {"content": "已完成", "final": True},
        "consolidate": {"summary": "汇总情况"},
        "review": {"decision": "close"},
    }


def clean_form_data(today: date) -> dict[str, dict[str, Any]]:
    """The data duban sets on the task after validation (the gateways read e.g. `action`)."""
    return {name: validate(FORMS[name], data, today) for name, data in form_data(today).items()}


def raw_start_data(today: date) -> dict[str, Any]:
    """Start data shaped like engine.routing.routing_data, for made-up unit ids."""
    roles = ["lead"] + ["support"] * SUPPORT_UNITS + ["implement"] * IMPLEMENT_UNITS
    units = [{"unit": 2 + i, "role": role} for i, role in enumerate(roles)]
    return {
        "item": {"plan": PLAN_KEY, "number": 1},
        "lead_unit": 2,
        "office_unit": 1,
        "units": units,
        "contributors": [u for u in units if u["role"] == "support"],
        "implementers": [u for u in units if u["role"] == "implement"],
        "ack_due": (today + timedelta(days=3)).isoformat(),
        "plan_due": (today + timedelta(days=7)).isoformat(),
    }


# --- results -----------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rates: list[float] = field(default_factory=list)  # completions/s, one per repetition
    latencies: list[float] = field(default_factory=list)  # seconds, one per completion
    wall: float = 0.0
    cpu: float = 0.0
    completions: int = 0
    state_bytes: float = 0.0
    db_bytes: float | None = None
    notes: list[str] = field(default_factory=list)
    # Bytes per stored instance: top-level, mean branch, largest (for the 8 KB target).
    instance_bytes: dict[str, float] = field(default_factory=dict)
    # duban's rate over the raw rate of a raw repetition run right beside it, per repetition.
    paired: list[float] = field(default_factory=list)

    def add_repetition(self, wall: float, cpu: float, latencies: list[float]) -> None:
        self.rates.append(len(latencies) / wall)
        self.latencies += latencies
        self.wall += wall
        self.cpu += cpu
        self.completions += len(latencies)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def ratio(self, raw: Result) -> float:
        """Against raw: the median of the paired ratios if there are any, else the ratio of
        the medians of separately run repetitions."""
        return statistics.median(self.paired) if self.paired else self.rate / raw.rate

    @property
    def mean_ms(self) -> float:
        return 1000 * self.wall / self.completions

    @property
    def p95_ms(self) -> float:
        return 1000 * statistics.quantiles(self.latencies, n=20)[-1]

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.completions


@contextmanager
def measured(result: Result) -> Iterator[list[float]]:
    """Time one repetition; the body appends one latency per completion to the list."""
    latencies: list[float] = []
    wall, cpu = time.perf_counter(), time.process_time()
    yield latencies
    result.add_repetition(time.perf_counter() - wall, time.process_time() - cpu, latencies)


def check_steps(steps: int, where: str) -> None:
    if steps != STEPS_PER_ITEM:
        raise RuntimeError(f"{where}: {steps} steps instead of {STEPS_PER_ITEM}")


# --- raw SpiffWorkflow -------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    dump: Callable[[BpmnWorkflow], bytes]
    load: Callable[[bytes, Specs], BpmnWorkflow]


def state_only_codec() -> Codec:
    return Codec(dump=dump_state, load=load_state)


def full_blob_codec() -> Codec:
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))

    def load(blob: bytes, _specs: Specs) -> BpmnWorkflow:
        workflow: BpmnWorkflow = serializer.deserialize_json(blob.decode())
        workflow.script_engine = SCRIPT_ENGINE
        return workflow

    return Codec(dump=lambda wf: serializer.serialize_json(wf).encode(), load=load)


def parse_specs(directory: Path) -> dict[str, Specs]:
    """Parse every process once and round-trip it through its stored form, as deploy and
    SPEC_CACHE do; keyed by process id (the file name)."""
    parser = new_parser()
    parser.add_bpmn_files(sorted(str(p) for p in directory.glob("*.bpmn")))
    dmn = sorted(str(p) for p in directory.glob("*.dmn"))
    if dmn:
        parser.add_dmn_files(dmn)
    return {
        pid: specs_from_dict(specs_to_dict(parser.get_spec(pid), parser.get_subprocess_specs(pid)))
        for pid in (p.stem for p in directory.glob("*.bpmn"))
    }


def _properties(task: Task) -> dict[str, str]:
    props: dict[str, str] = task.task_spec.extensions.get("properties", {})
    return props


@dataclass
class RawInstance:
    specs: Specs
    parent: int | None = None
    parent_element: str | None = None  # the parent's element that started this branch
    blob: bytes = b""
    finished: bool = False
    steps: set[UUID] = field(default_factory=set)  # ready human tasks already handed out
    children: dict[UUID, int] = field(default_factory=dict)  # detached task -> child


@dataclass(frozen=True)
class RawStep:
    instance: int
    task: UUID
    form: str


class RawRouting:
    """What duban asks of SpiffWorkflow for one routed item, and nothing else: start instances,
    complete human steps, run detached calls (manual tasks naming a `process`) as child
    instances, and resume a parent once the last branch its element started has ended (as
    engine.runtime does). Every instance is loaded from and dumped to its blob around each use,
    as duban does with the database row."""

    def __init__(self, specs: dict[str, Specs], codec: Codec) -> None:
        self.specs, self.codec = specs, codec
        self.instances: dict[int, RawInstance] = {}
        self.steps: deque[RawStep] = deque()  # open human steps, oldest first
        self.peak = 0  # largest blob written

    def start(
        self,
        process_id: str,
        data: dict[str, Any],
        parent: int | None = None,
        parent_element: str | None = None,
    ) -> int:
        workflow = new_workflow(self.specs[process_id])
        workflow.get_tasks(state=SpiffState.READY)[0].set_data(**data)
        workflow.do_engine_steps()
        key = len(self.instances)
        self.instances[key] = RawInstance(self.specs[process_id], parent, parent_element)
        self._sync(key, workflow)
        self._save(key, workflow)
        return key

    def complete(self, step: RawStep, data: dict[str, Any]) -> None:
        workflow = self._load(step.instance)
        task = workflow.get_task_from_id(step.task)
        task.set_data(**data)
        task.run()
        workflow.do_engine_steps()
        self._sync(step.instance, workflow)
        self._save(step.instance, workflow)
        self._resume_parents(step.instance)

    def _resume_parents(self, key: int) -> None:
        child = self.instances[key]
        while child.finished and child.parent is not None:
            parent = self.instances[child.parent]
            siblings = (self.instances[c] for c in parent.children.values())
            if any(not s.finished and s.parent_element == child.parent_element for s in siblings):
                return
            workflow = self._load(child.parent)
            self._sync(child.parent, workflow)
            self._save(child.parent, workflow)
            child = parent

    def _sync(self, key: int, workflow: BpmnWorkflow) -> None:
        """Hand out new human steps, start a child per new detached call, and run the detached
        calls whose child has ended (then go round again)."""
        instance = self.instances[key]
        while True:
            ended = []
            for task in workflow.get_tasks(state=SpiffState.READY, manual=True):
                props = _properties(task)
                if "process" not in props:
                    if task.id not in instance.steps:
                        instance.steps.add(task.id)
                        self.steps.append(RawStep(key, task.id, props["form"]))
                    continue
                if task.id not in instance.children:
                    inputs = workflow.script_engine.evaluate(task, props["inputs"])
                    child = self.start(props["process"], inputs, key, task.task_spec.bpmn_id)
                    instance.children[task.id] = child
                if self.instances[instance.children[task.id]].finished:
                    ended.append(task)
            if not ended:
                return
            for task in ended:
                task.run()
            workflow.do_engine_steps()

    def _load(self, key: int) -> BpmnWorkflow:
        instance = self.instances[key]
        return self.codec.load(instance.blob, instance.specs)

    def _save(self, key: int, workflow: BpmnWorkflow) -> None:
        instance = self.instances[key]
        instance.blob = self.codec.dump(workflow)
        instance.finished = workflow.is_completed()
        self.peak = max(self.peak, len(instance.blob))

    def state_bytes(self) -> int:
        return sum(len(i.blob) for i in self.instances.values())


def raw_item(routing: RawRouting, data: dict[str, dict[str, Any]], latencies: list[float]) -> None:
    """Complete every step of the started item, oldest open step first."""
    steps = 0
    while routing.steps:
        t0 = time.perf_counter()
        step = routing.steps.popleft()
        routing.complete(step, data[step.form])
        latencies.append(time.perf_counter() - t0)
        steps += 1
    check_steps(steps, "raw")
    if not routing.instances[0].finished:
        raise RuntimeError("raw: the item did not finish")


def raw_started(specs: dict[str, Specs], codec: Codec, today: date) -> RawRouting:
    routing = RawRouting(specs, codec)
    routing.start(PROCESS_ID, raw_start_data(today))
    return routing


def bench_raw(
    name: str, specs: dict[str, Specs], codec: Codec, n: int, today: date
) -> tuple[Result, RawRouting]:
    result = Result(name)
    data = clean_form_data(today)
    warm = raw_started(specs, codec, today)
    raw_item(warm, data, [])
    root = warm.instances[0]
    branches = len(warm.instances) - 1
    result.instance_bytes = {
        "top_level": len(root.blob),
        "branch_mean": (warm.state_bytes() - len(root.blob)) / max(branches, 1),
        "largest": warm.peak,
    }
    result.notes.append(
        f"{len(warm.instances)} instance(s) per item; a finished item stores {len(root.blob):,} "
        f"bytes in its top-level instance and {warm.state_bytes() - len(root.blob):,} in its "
        f"branch instances; the largest single blob written was {warm.peak:,} bytes"
    )
    for _ in range(REPETITIONS):
        started = [raw_started(specs, codec, today) for _ in range(n)]  # not timed
        with measured(result) as latencies:
            for routing in started:
                raw_item(routing, data, latencies)
    result.state_bytes = warm.state_bytes()
    return result, warm


@dataclass
class RawBeside:
    """Raw state-only items run between duban's, one beside each, so that a ratio compares
    runs made under the same machine conditions: on a shared machine the speed of pure Python
    drifts by tens of per cent within seconds (raw repetitions of 300 steps back to back ranged
    137-232 /s here), which a raw figure taken at another moment would carry into the ratio."""

    specs: dict[str, Specs]
    today: date
    rates: list[float] = field(default_factory=list)  # one per repetition
    _started: list[RawRouting] = field(default_factory=list)
    _seconds: float = 0.0
    _steps: int = 0

    def begin(self, n: int) -> None:
        """Start `n` items (not timed) for the repetition about to run."""
        self._started = [raw_started(self.specs, state_only_codec(), self.today) for _ in range(n)]
        self._seconds, self._steps = 0.0, 0

    def item(self) -> None:
        """Complete the next started item, timed."""
        latencies: list[float] = []
        raw_item(self._started.pop(), clean_form_data(self.today), latencies)
        self._seconds += sum(latencies)
        self._steps += len(latencies)

    def end(self) -> float:
        self.rates.append(self._steps / self._seconds)
        return self.rates[-1]


# --- duban world -------------------------------------------------------------------------------


def build_world(session: Session, tasks: int) -> None:
    """One county, an office unit, 14 units with liaisons, one plan of `tasks` items."""
    jur = Jurisdiction(code="bench", name="基准县", level=Level.COUNTY)
    session.add(jur)
    session.flush()
    office = Unit(jurisdiction_id=jur.id, name="县委督查室", kind=UnitKind.PARTY)
    roles = [Role.LEAD] + [Role.SUPPORT] * SUPPORT_UNITS + [Role.IMPLEMENT] * IMPLEMENT_UNITS
    units = [
        Unit(
            jurisdiction_id=jur.id,
            name=f"单位{i + 1}",
            kind=UnitKind.LOCAL_GOVERNMENT if role == Role.IMPLEMENT else UnitKind.DEPARTMENT,
        )
        for i, role in enumerate(roles)
    ]
    session.add_all([office, *units])
    session.flush()
    jur.office_unit_id = office.id
    ensure_position(session, office, PositionKind.OFFICE_STAFF)
    for unit in units:
        ensure_position(session, unit, PositionKind.LIAISON)
    plan = Plan(key=PLAN_KEY, title="基准测试清单", jurisdiction_id=jur.id, content_hash="bench")
    for number in range(1, tasks + 1):
        plan.tasks.append(
            PlanTask(
                number=number,
                text=f"任务{number}",
                units=[
                    PlanTaskUnit(unit_id=u.id, role=r, ordinal=i)
                    for i, (u, r) in enumerate(zip(units, roles, strict=True))
                ],
            )
        )
    session.add(plan)
    session.flush()


def setup_database(engine: Engine, processes: Path, items: int) -> tuple[list[int], float]:
    """Schema, world, deployment, then hand-out; returns the items' top-level instance ids and
    the seconds hand_out took per item."""
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        build_world(session, items)
        deploy_directory(session, processes, deployed_by="bench")
    t0 = time.perf_counter()
    with factory.begin() as session:
        ids = [i.id for i in hand_out(session, PLAN_KEY, None, utcnow())]
    seconds = (time.perf_counter() - t0) / len(ids)
    # Planner statistics for the tables just filled, as autovacuum would gather them within a
    # minute: without them PostgreSQL fetches the item's next step by walking every open step
    # of every item (~1 ms a fetch on this machine), which no deployment would see.
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    return ids, seconds


# --- duban completions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    id: int
    position_id: int
    form: str


# Built once, as the application's own reads are (engine.direct): the item's oldest open step,
# in its top-level instance or any of its branch instances.
def _next_step(of_item: Any) -> Direct:
    return Direct(
        select(HumanTask.id, HumanTask.position_id, HumanTask.form)
        .where(of_item, HumanTask.state == TaskState.READY)
        .order_by(HumanTask.id)
        .limit(1)
    )


_ITEM_INSTANCES = select(Instance.id).where(Instance.root_id == bindparam("root"))
_NEXT_STEP = _next_step(HumanTask.instance_id.in_(_ITEM_INSTANCES))
# On PostgreSQL the item's instance ids go in as an array: with `IN (subquery)` the planner
# walks every step in id order until one of the item's is open (it guesses that open steps are
# spread evenly), which costs more the more items the run has (0.4 ms a fetch half-way through
# 101 items); with the array it reads the item's own steps through their instance index.
_NEXT_STEP_PG = _next_step(
    HumanTask.instance_id == func.any(func.array(_ITEM_INSTANCES.scalar_subquery()))
)


def next_step(factory: sessionmaker[Session], root_id: int) -> Step | None:
    """What a client does before acting: ask for the item's oldest open step (a read-only
    transaction of its own)."""
    with factory() as session:
        conn = session.connection()
        query = _NEXT_STEP_PG if conn.dialect.name == "postgresql" else _NEXT_STEP
        found = rows(conn, query, {"root": root_id})
    return Step(**found[0]) if found else None


def duban_item(
    factory: sessionmaker[Session],
    root_id: int,
    data: dict[str, dict[str, Any]],
    latencies: list[float],
) -> None:
    """Complete every step of one item; each latency includes fetching the step."""
    steps, t0 = 0, time.perf_counter()
    while (step := next_step(factory, root_id)) is not None:
        with factory.begin() as session:
            complete_task(
                session, step.id, Actor(position_id=step.position_id), data[step.form], utcnow()
            )
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        steps, t0 = steps + 1, t1
    check_steps(steps, f"item {root_id}")


@contextmanager
def counted_sql(engine: Engine) -> Iterator[dict[str, int]]:
    counts = {"statements": 0, "transactions": 0}

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE is a transaction
            counts["statements"] += 1

    def on_begin(*_args: Any) -> None:
        counts["transactions"] += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "begin", on_begin)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(engine, "begin", on_begin)


def pinging(engine: Engine) -> bool:
    return bool(getattr(engine.pool, "_pre_ping", False))


@dataclass(frozen=True)
class Stored:
    items: int  # finished top-level instances
    instances: int  # finished instances, branches included
    root_bytes: float  # mean length(state) of a finished top-level instance
    item_bytes: float  # mean length(state) summed over an item's instances
    largest: int  # the longest state of any instance


def stored_state(factory: sessionmaker[Session]) -> Stored:
    done = Instance.status == InstanceStatus.COMPLETED
    with factory() as session:
        items, root_bytes = session.execute(
            select(func.count(), func.avg(func.length(Instance.state))).where(
                done, Instance.parent_id.is_(None)
            )
        ).one()
        instances, total, largest = session.execute(
            select(
                func.count(),
                func.sum(func.length(Instance.state)),
                func.max(func.length(Instance.state)),
            ).where(done)
        ).one()
        running = session.scalar(select(func.count()).where(~done).select_from(Instance))
    if running:
        raise RuntimeError(f"{running} instance(s) did not finish")
    return Stored(items, instances, float(root_bytes), float(total) / items, int(largest))


def bench_duban(
    name: str,
    engine: Engine,
    args: argparse.Namespace,
    today: date,
    profile: bool,
    raw: RawBeside,
) -> tuple[Result, int, str | None]:
    """Returns the result, the number of finished items and, if asked, a profile. A raw item
    runs before each duban item (RawBeside); its time is not in duban's figures."""
    n, result = args.instances, Result(name)
    SPEC_CACHE.clear()  # version ids restart in every database
    ids, start_seconds = setup_database(engine, args.processes, 1 + REPETITIONS * n + profile)
    factory = session_factory(engine)
    data = form_data(today)
    with counted_sql(engine) as counts:  # the warm-up item
        duban_item(factory, ids[0], data, [])
    for rep in range(REPETITIONS):
        raw.begin(n)
        latencies: list[float] = []
        wall = cpu = 0.0
        for root_id in ids[1 + rep * n : 1 + (rep + 1) * n]:
            raw.item()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            duban_item(factory, root_id, data, latencies)
            wall, cpu = wall + time.perf_counter() - wall0, cpu + time.process_time() - cpu0
        result.add_repetition(wall, cpu, latencies)
        result.paired.append(result.rates[-1] / raw.end())
    report = profile_item(name, factory, ids[-1], data) if profile else None
    stored = stored_state(factory)
    if stored.items != len(ids):
        raise RuntimeError(f"{name}: {stored.items} of {len(ids)} items finished")
    result.state_bytes = stored.item_bytes
    result.instance_bytes = {
        "top_level": stored.root_bytes,
        "branch_mean": (stored.item_bytes - stored.root_bytes)
        / max(stored.instances / stored.items - 1, 1),
        "largest": stored.largest,
    }
    result.notes += [
        f"hand_out: {1000 * start_seconds:.1f} ms per item started ({len(ids)} in one "
        "transaction, not in the figures above)",
        f"SQL per completion (counted on the warm-up item, step fetches included): "
        f"{counts['statements'] / STEPS_PER_ITEM:.1f} statements in "
        f"{counts['transactions'] / STEPS_PER_ITEM:.1f} transactions"
        + (
            ", plus a `SELECT 1` per connection checkout (pool_pre_ping)" if pinging(engine) else ""
        ),
        f"{stored.instances / stored.items:.0f} instance(s) per item; a finished item stores "
        f"{stored.root_bytes:,.0f} bytes of state in its top-level instance and "
        f"{stored.item_bytes - stored.root_bytes:,.0f} in its branch instances",
    ]
    return result, stored.items, report


# --- profile -----------------------------------------------------------------------------------


def profile_item(
    name: str, factory: sessionmaker[Session], root_id: int, data: dict[str, dict[str, Any]]
) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    duban_item(factory, root_id, data, [])
    profiler.disable()
    return profile_report(name, pstats.Stats(profiler))


ProfileRow = tuple[float, int, str]  # cumulative seconds, calls, label


def code_location(path: str) -> str | None:
    """'engine/…' or 'SpiffWorkflow/…' for the code this report looks at, else None."""
    if "/SpiffWorkflow/" in path:
        return "SpiffWorkflow/" + path.split("/SpiffWorkflow/", 1)[1]
    if path.startswith(str(ROOT / "engine")):
        return str(Path(path).relative_to(ROOT))
    return None


def package_of(path: str, func_name: str) -> str:
    """Where self time goes, coarsely: built-ins count for the module they belong to."""
    text = f"{path} {func_name}"
    for needle, label in (
        ("/SpiffWorkflow/", "SpiffWorkflow"),
        ("/sqlalchemy/", "SQLAlchemy"),
        ("psycopg", "database driver (psycopg / sqlite3)"),
        ("sqlite3", "database driver (psycopg / sqlite3)"),
        (str(ROOT / "engine"), "engine/"),
        ("json", "json + zlib"),
        ("zlib", "json + zlib"),
        ("uuid", "uuid"),
    ):
        if needle in text:
            return label
    return "other (built-ins, stdlib)"


def _top_table(rows: list[ProfileRow], total: float, limit: int) -> list[str]:
    lines = ["| Cumulative ms | Share | Calls | Function |", "|---:|---:|---:|---|"]
    lines += [
        f"| {1000 * cum:.1f} | {100 * cum / total:.0f}% | {calls} | `{label}` |"
        for cum, calls, label in sorted(rows, reverse=True)[:limit]
    ]
    return lines


def profile_report(name: str, stats: pstats.Stats, limit: int = 10) -> str:
    return "\n".join(
        [
            f"{name}, one item ({STEPS_PER_ITEM} completions including the step "
            f"fetches): {1000 * stats.total_tt:.0f} ms under cProfile, which inflates every "
            "figure; read the shares.",
            "",
            *profile_tables(stats, limit),
        ]
    )


def profile_tables(stats: pstats.Stats, limit: int = 10) -> list[str]:
    """Top cumulative entries in engine/ and in SpiffWorkflow, and self time by package."""
    total = stats.total_tt
    engine_rows: list[ProfileRow] = []
    spiff_rows: list[ProfileRow] = []
    self_time: dict[str, float] = {}
    for (path, line, func_name), (_cc, calls, tt, cum, _callers) in stats.stats.items():
        package = package_of(path, func_name)
        self_time[package] = self_time.get(package, 0.0) + tt
        where = code_location(path)
        if where is not None:
            rows = spiff_rows if where.startswith("SpiffWorkflow") else engine_rows
            rows.append((cum, calls, f"{where}:{line} {func_name}"))
    by_package = sorted(self_time.items(), key=lambda kv: -kv[1])
    return [
        f"Top {limit} cumulative in engine/:",
        "",
        *_top_table(engine_rows, total, limit),
        "",
        f"Top {limit} cumulative in SpiffWorkflow:",
        "",
        *_top_table(spiff_rows, total, limit),
        "",
        "Self time by package: "
        + ", ".join(f"{label} {100 * tt / total:.0f}%" for label, tt in by_package)
        + ".",
    ]


# --- databases ---------------------------------------------------------------------------------


def sqlite_bytes(engine: Engine, path: Path) -> int:
    """Database file size once every connection is closed (SQLite then checkpoints the WAL)."""
    engine.dispose()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def bench_sqlite(
    args: argparse.Namespace, today: date, profile: bool, raw: RawBeside
) -> tuple[Result, str | None]:
    with tempfile.TemporaryDirectory(prefix="duban-bench-") as tmp:
        path = Path(tmp) / "bench.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        try:
            result, items, report = bench_duban(
                "duban SQLite (file, WAL)", engine, args, today, profile, raw
            )
            result.db_bytes = sqlite_bytes(engine, path) / items
            result.notes.append(
                "DB bytes: the whole SQLite file (all tables and indexes, directory and spec "
                "included; WAL checkpointed on close, no VACUUM), divided by finished items."
            )
        finally:
            engine.dispose()
    return result, report


def pg_reachable(url: str) -> str | None:
    """The server version, or None (with a printed note) if it cannot be reached."""
    probe = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with probe.connect() as conn:
            return str(conn.scalar(text("SHOW server_version")))
    except OperationalError as exc:
        print(f"PostgreSQL at {url} is unreachable, skipped: {exc.orig}", file=sys.stderr)
        return None
    finally:
        probe.dispose()


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A fresh schema for this run, dropped afterwards."""
    with scratch_schema(url, f"bench_{os.getpid()}") as schema:
        yield schema


def pg_table_bytes(engine: Engine, schema: str) -> dict[str, int]:
    query = text(
        "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = :schema AND c.relkind = 'r'"
    )
    with engine.connect() as conn:
        return {name: int(size) for name, size in conn.execute(query, {"schema": schema})}


def pg_vacuum_full(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM FULL")


def _kib_per_item(sizes: dict[str, int], items: int) -> str:
    def kib(size: float) -> str:
        return f"{size / items / 1024:.1f}"

    main = ("instance", "human_task", "history")
    parts = [f"{name} {kib(sizes.get(name, 0))}" for name in main]
    parts.append(f"other tables {kib(sum(v for k, v in sizes.items() if k not in main))}")
    return f"{kib(sum(sizes.values()))} KiB ({', '.join(parts)})"


def describe_pg_bytes(before: dict[str, int], after: dict[str, int], items: int) -> str:
    return (
        "DB bytes: pg_total_relation_size summed over the schema's tables (heap, TOAST and "
        "indexes; includes the human_task and history rows, dead row versions left by the run, "
        f"the directory and the deployed specs), divided by {items} finished items: "
        f"{_kib_per_item(before, items)}; after VACUUM FULL {_kib_per_item(after, items)}."
    )


def bench_postgres(
    args: argparse.Namespace, today: date, profile: bool, raw: RawBeside
) -> tuple[Result, str | None]:
    with pg_schema(args.postgres) as schema:
        engine = make_engine(args.postgres, connect_args={"options": f"-csearch_path={schema}"})
        try:
            result, items, report = bench_duban(
                "duban PostgreSQL", engine, args, today, profile, raw
            )
            before = pg_table_bytes(engine, schema)
            pg_vacuum_full(engine)
            after = pg_table_bytes(engine, schema)
            result.db_bytes = sum(before.values()) / items
            result.notes.append(describe_pg_bytes(before, after, items))
            result.notes.append(
                "CPU: this process only; the PostgreSQL server's own CPU is not counted."
            )
        finally:
            engine.dispose()
    return result, report


# --- report ------------------------------------------------------------------------------------


def code_digest(processes: Path) -> str:
    """Short sha256 of engine/ and the process files, to tell which code a report measured."""
    digest = hashlib.sha256()
    files = sorted((ROOT / "engine").rglob("*.py")) + sorted(processes.glob("*.bpmn"))
    for path in files + sorted(processes.glob("*.dmn")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_section(pg_version: str | None, load_at_start: str) -> list[str]:
    return machine_lines(
        f"SpiffWorkflow {version('SpiffWorkflow')}, SQLAlchemy {version('SQLAlchemy')}, "
        f"psycopg {version('psycopg')}, SQLite {sqlite3.sqlite_version}",
        [
            f"- PostgreSQL server: {pg_version or 'not measured'}",
            f"- Load average (1/5/15 min) at start {load_at_start}, at end {load_average()}: "
            "other work on the machine inflates wall times, and CPU times less",
        ],
    )


def table(results: list[Result]) -> list[str]:
    lines = [
        f"| Variant | Completions/s (median of {REPETITIONS}) | × raw state-only "
        "| Mean ms / completion | p95 ms | CPU ms / completion | State bytes / finished item "
        "| DB bytes / finished item |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        db = f"{r.db_bytes:,.0f}" if r.db_bytes is not None else "–"
        lines.append(
            f"| {r.name} | {r.rate:,.0f} | {r.ratio(results[0]):.2f} | {r.mean_ms:.2f} "
            f"| {r.p95_ms:.2f} | {r.cpu_ms:.2f} | {r.state_bytes:,.0f} | {db} |"
        )
    return lines


def render(
    results: list[Result],
    args: argparse.Namespace,
    pg_version: str | None,
    profile: str | None,
    load_at_start: str,
) -> str:
    n = args.instances
    lines = [
        f"# Engine benchmark: completing human steps of `{PROCESS_ID}`",
        "",
        f"Processes: `{args.processes}`; code digest (engine/ and process files) "
        f"`{args.digest}` (taken at start). Each routed item: 1 lead + {SUPPORT_UNITS} supporting "
        f"+ {IMPLEMENT_UNITS} implementing units = {STEPS_PER_ITEM} human steps. "
        f"{REPETITIONS} repetitions of {n} items ({STEPS_PER_ITEM * n} completions each) per "
        "variant, after one warm-up item.",
        "",
        *table(results),
        "",
        "## What is timed",
        "",
        "- Raw rows: per step, what duban asks of SpiffWorkflow: load the step's instance "
        "(deserialize), `set_data` with the validated form data, `task.run()`, "
        "`do_engine_steps()`, start a child instance for every new detached call, dump "
        "(serialize); when a branch instance ends and it was the last running one its parent "
        "element started, load the parent, run the ended detached calls and dump it (as "
        "engine.runtime does). No database. Starting items is not timed.",
        "- duban rows: per step, a short read transaction fetching the item's oldest READY "
        "`HumanTask` (id, position, form) — what a client does before acting — then one "
        "transaction `with sessionmaker.begin(): complete_task(...)`. Both are timed; starting "
        "items (`hand_out`) is not.",
        "- × raw state-only, for duban rows: in each duban repetition a raw state-only item "
        "(started beforehand, not timed) is completed right before each duban item, and the "
        "repetition's ratio is duban's rate over those raw items' rate; the ratio shown is the "
        "median over the repetitions (the notes list them). A change in the machine's speed "
        "thus reaches both sides of a ratio alike. The raw rows are measured once, at the "
        "start.",
        "- State bytes per finished item: summed over the item's instances (top-level and "
        "branches). Raw state-only = zlib-compressed state without spec (as duban stores it); "
        "raw full blob = uncompressed `serialize_json` text; duban = `length(Instance.state)`.",
        "- CPU ms / completion: `time.process_time()` of this Python process over the timed "
        "loops. The project's target is ≤ 5 ms CPU per duban completion.",
        "",
        "## Notes",
        "",
    ]
    for r in results:
        lines += [f"- {r.name} — {note}" for note in r.notes]
    lines += [
        f"- {r.name} — CPU per completion {r.cpu_ms:.1f} ms against the ≤ 5 ms target: "
        + ("met" if r.cpu_ms <= 5 else "NOT met")
        for r in results
        if r.name.startswith("duban")
    ]
    if pg_version is None:
        lines.append("- PostgreSQL was not measured (skipped or unreachable).")
    if profile:
        lines += ["", "## Profile of one duban item", "", profile]
    lines += ["", *machine_section(pg_version, load_at_start), ""]
    return "\n".join(lines)


def json_figures(
    results: list[Result], args: argparse.Namespace, pg_version: str | None, load_at_start: str
) -> dict[str, Any]:
    """The table's figures, per variant, for bench/report.py."""
    base = results[0].rate
    return {
        "instances": args.instances,
        "repetitions": REPETITIONS,
        "steps_per_item": STEPS_PER_ITEM,
        "code_digest": args.digest,
        "postgres": pg_version,
        "load": {"start": load_at_start, "end": load_average()},
        "variants": [
            {
                "name": r.name,
                "completions_per_s": r.rate,
                "ratio_to_raw": r.ratio(results[0]),
                "ratio_separate": r.rate / base,
                "ratio_pairs": r.paired,
                "mean_ms": r.mean_ms,
                "p95_ms": r.p95_ms,
                "cpu_ms": r.cpu_ms,
                "state_bytes_per_item": r.state_bytes,
                "db_bytes_per_item": r.db_bytes,
                "instance_bytes": r.instance_bytes,
            }
            for r in results
        ],
    }


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/engine.md")
    parser.add_argument(
        "--json", type=Path, help="also write the figures as JSON here (bench/report.py reads it)"
    )
    parser.add_argument(
        "--postgres",
        default=DEFAULT_PG,
        help="SQLAlchemy URL (postgresql+psycopg://...); '' to skip PostgreSQL",
    )
    parser.add_argument(
        "--instances", type=int, default=20, help="routed items per repetition (default 20)"
    )
    parser.add_argument(
        "--processes",
        type=Path,
        default=ROOT / "processes",
        help="directory of BPMN/DMN files to deploy (default: processes/)",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the cProfile run of one extra duban item"
    )
    parser.add_argument(
        "--no-sqlite", action="store_true", help="skip the SQLite variant (PostgreSQL only)"
    )
    return parser.parse_args(argv)


def bench_raw_rows(args: argparse.Namespace, today: date) -> list[Result]:
    specs = parse_specs(args.processes)
    state_only, _ = bench_raw(RAW_STATE_ONLY, specs, state_only_codec(), args.instances, today)
    full, item = bench_raw(
        "raw SpiffWorkflow, full blob (serialize_json)",
        specs,
        full_blob_codec(),
        args.instances,
        today,
    )
    zipped = sum(len(zlib.compress(i.blob, 6)) for i in item.instances.values())
    full.notes.append(f"zlib would shrink a finished item's blobs to {zipped:,} bytes")
    return [state_only, full]


def paired_note(result: Result, beside: RawBeside) -> Result:
    pairs = ", ".join(
        f"{d:,.0f}/{r:,.0f} = ×{p:.2f}"
        for d, r, p in zip(result.rates, beside.rates, result.paired, strict=True)
    )
    result.notes.append(
        f"× raw: median of {len(result.paired)} paired ratios (duban /s over the /s of the raw "
        f"items run between duban's in the same repetition): {pairs}"
    )
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    today, load_at_start = local_today(utcnow()), load_average()
    args.digest = code_digest(args.processes)
    print(f"raw: {REPETITIONS} x {args.instances} items ...", file=sys.stderr)
    results = bench_raw_rows(args, today)
    pg_version = pg_reachable(args.postgres) if args.postgres else None
    want_profile = not args.no_profile
    specs = parse_specs(args.processes)
    print("duban SQLite ...", file=sys.stderr)
    beside = RawBeside(specs, today)
    sqlite_result, profile = bench_sqlite(args, today, want_profile and pg_version is None, beside)
    results.append(paired_note(sqlite_result, beside))
    if pg_version is not None:
        print("duban PostgreSQL ...", file=sys.stderr)
        beside = RawBeside(specs, today)
        pg_result, profile = bench_postgres(args, today, want_profile, beside)
        results.append(paired_note(pg_result, beside))
    report = render(results, args, pg_version, profile, load_at_start)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    if args.json:
        figures = json_figures(results, args, pg_version, load_at_start)
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
