"""Throughput of one human step of `task_routing`: raw SpiffWorkflow against duban persisted.

Each instance has 1 lead, 3 supporting and 10 implementing units, i.e. 30 human steps
(14 acknowledge, 1 plan, 3 contribute, 10 final reports, 1 consolidate, 1 review). Variants:

* raw state-only: SpiffWorkflow in memory, state-only load/dump (engine.specs) around each step;
* raw full blob: the same with SpiffWorkflow's own serialize_json/deserialize_json (spec included);
* duban SQLite / PostgreSQL: engine.runtime.complete_task, one transaction per completion.

Usage: .venv/bin/python bench/bench_engine.py [--out FILE] [--postgres URL] [--instances N]
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState as SpiffState
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import local_today, utcnow
from engine.db import make_engine, session_factory, upgrade
from engine.deploy import deploy_directory
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
PROCESSES = ROOT / "processes"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPETITIONS = 3
SUPPORT_UNITS = 3
IMPLEMENT_UNITS = 10
STEPS_PER_INSTANCE = 1 + SUPPORT_UNITS + IMPLEMENT_UNITS + 1 + SUPPORT_UNITS + IMPLEMENT_UNITS + 2
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

    def add_repetition(self, wall: float, cpu: float, latencies: list[float]) -> None:
        self.rates.append(len(latencies) / wall)
        self.latencies += latencies
        self.wall += wall
        self.cpu += cpu
        self.completions += len(latencies)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

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
    if steps != STEPS_PER_INSTANCE:
        raise RuntimeError(f"{where}: {steps} steps instead of {STEPS_PER_INSTANCE}")


# --- raw SpiffWorkflow -------------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    dump: Callable[[BpmnWorkflow], bytes]
    load: Callable[[bytes], BpmnWorkflow]


def parse_specs() -> Specs:
    """Parse once and round-trip through the stored form, as deploy + SPEC_CACHE do."""
    parser = new_parser()
    parser.add_bpmn_file(str(PROCESSES / f"{PROCESS_ID}.bpmn"))
    spec, subs = parser.get_spec(PROCESS_ID), parser.get_subprocess_specs(PROCESS_ID)
    return specs_from_dict(specs_to_dict(spec, subs))


def state_only_codec(specs: Specs) -> Codec:
    return Codec(dump=dump_state, load=lambda blob: load_state(blob, specs))


def full_blob_codec() -> Codec:
    serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))

    def load(blob: bytes) -> BpmnWorkflow:
        workflow: BpmnWorkflow = serializer.deserialize_json(blob.decode())
        workflow.script_engine = SCRIPT_ENGINE
        return workflow

    return Codec(dump=lambda wf: serializer.serialize_json(wf).encode(), load=load)


def raw_start(specs: Specs, codec: Codec, start: dict[str, Any]) -> bytes:
    workflow = new_workflow(specs)
    workflow.get_tasks(state=SpiffState.READY)[0].set_data(**start)
    workflow.do_engine_steps()
    return codec.dump(workflow)


def raw_step(codec: Codec, blob: bytes, data: dict[str, dict[str, Any]]) -> tuple[bytes, bool]:
    """Load, complete the first ready human task, run the engine, dump; (blob, finished)."""
    workflow = codec.load(blob)
    task = workflow.get_tasks(state=SpiffState.READY, manual=True)[0]
    task.set_data(**data[task.task_spec.extensions["properties"]["form"]])
    task.run()
    workflow.do_engine_steps()
    return codec.dump(workflow), workflow.is_completed()


def raw_instance(
    codec: Codec, blob: bytes, data: dict[str, dict[str, Any]], latencies: list[float]
) -> bytes:
    finished, steps = False, 0
    while not finished:
        t0 = time.perf_counter()
        blob, finished = raw_step(codec, blob, data)
        latencies.append(time.perf_counter() - t0)
        steps += 1
    check_steps(steps, "raw")
    return blob


def state_sizes(codec: Codec, blob: bytes, data: dict[str, dict[str, Any]]) -> list[int]:
    """Stored size after each step of one instance."""
    sizes, finished = [], False
    while not finished:
        blob, finished = raw_step(codec, blob, data)
        sizes.append(len(blob))
    check_steps(len(sizes), "raw")
    return sizes


def bench_raw(name: str, specs: Specs, codec: Codec, n: int, today: date) -> tuple[Result, bytes]:
    result = Result(name)
    data, start = clean_form_data(today), raw_start_data(today)
    sizes = state_sizes(codec, raw_start(specs, codec, start), data)  # warm-up
    peak = max(sizes)
    result.notes.append(
        f"stored state grows from {sizes[0]:,} bytes after step 1 to a peak of {peak:,} "
        f"after step {sizes.index(peak) + 1} (the fan-out into one sub-workflow per unit); "
        f"{sizes[-1]:,} when finished"
    )
    last = b""
    for _ in range(REPETITIONS):
        started = [raw_start(specs, codec, start) for _ in range(n)]  # not timed
        with measured(result) as latencies:
            for blob in started:
                last = raw_instance(codec, blob, data, latencies)
    result.state_bytes = len(last)
    return result, last


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


def setup_database(engine: Engine, tasks: int) -> tuple[list[int], float]:
    """Schema, world, deployment, then hand-out; returns instance ids and seconds per start."""
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        build_world(session, tasks)
        deploy_directory(session, PROCESSES, deployed_by="bench")
    t0 = time.perf_counter()
    with factory.begin() as session:
        ids = [i.id for i in hand_out(session, PLAN_KEY, None, utcnow())]
    return ids, (time.perf_counter() - t0) / len(ids)


# --- duban completions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    id: int
    position_id: int
    form: str


def next_step(factory: sessionmaker[Session], instance_id: int) -> Step | None:
    """What a client does before acting: ask for the instance's next open step."""
    with factory() as session:
        row = session.execute(
            select(HumanTask.id, HumanTask.position_id, HumanTask.form)
            .where(HumanTask.instance_id == instance_id, HumanTask.state == TaskState.READY)
            .order_by(HumanTask.id)
            .limit(1)
        ).first()
    return Step(*row) if row else None


def duban_instance(
    factory: sessionmaker[Session],
    instance_id: int,
    data: dict[str, dict[str, Any]],
    latencies: list[float],
) -> None:
    """Complete every step of one instance; each latency includes fetching the step."""
    steps, t0 = 0, time.perf_counter()
    while (step := next_step(factory, instance_id)) is not None:
        with factory.begin() as session:
            complete_task(
                session, step.id, Actor(position_id=step.position_id), data[step.form], utcnow()
            )
        t1 = time.perf_counter()
        latencies.append(t1 - t0)
        steps, t0 = steps + 1, t1
    check_steps(steps, f"instance {instance_id}")


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


def finished_state_bytes(factory: sessionmaker[Session]) -> tuple[int, float]:
    with factory() as session:
        count, mean = session.execute(
            select(func.count(), func.avg(func.length(Instance.state))).where(
                Instance.status == InstanceStatus.COMPLETED
            )
        ).one()
    return count, float(mean)


def bench_duban(
    name: str, engine: Engine, n: int, today: date, profile: bool
) -> tuple[Result, int, str | None]:
    """Returns the result, the number of finished instances and, if asked, a profile."""
    result = Result(name)
    ids, start_seconds = setup_database(engine, 1 + REPETITIONS * n + int(profile))
    result.notes.append(
        f"hand_out: {1000 * start_seconds:.1f} ms per instance started "
        f"({len(ids)} in one transaction, not in the figures above)"
    )
    factory = session_factory(engine)
    data = form_data(today)
    with counted_sql(engine) as counts:  # the warm-up instance
        duban_instance(factory, ids[0], data, [])
    result.notes.append(
        f"SQL per completion (counted on the warm-up instance, step fetches included): "
        f"{counts['statements'] / STEPS_PER_INSTANCE:.1f} statements in "
        f"{counts['transactions'] / STEPS_PER_INSTANCE:.1f} transactions"
        + (", plus a `SELECT 1` per connection checkout (pool_pre_ping)" if pinging(engine) else "")
    )
    for rep in range(REPETITIONS):
        with measured(result) as latencies:
            for instance_id in ids[1 + rep * n : 1 + (rep + 1) * n]:
                duban_instance(factory, instance_id, data, latencies)
    report = profile_instance(name, factory, ids[-1], data) if profile else None
    finished, result.state_bytes = finished_state_bytes(factory)
    if finished != len(ids):
        raise RuntimeError(f"{name}: {finished} of {len(ids)} instances finished")
    return result, finished, report


# --- profile -----------------------------------------------------------------------------------


def profile_instance(
    name: str, factory: sessionmaker[Session], instance_id: int, data: dict[str, dict[str, Any]]
) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    duban_instance(factory, instance_id, data, [])
    profiler.disable()
    return profile_report(name, pstats.Stats(profiler))


ProfileRow = tuple[float, int, str]  # cumulative seconds, calls, label


def _where(path: str) -> str | None:
    """'engine/…' or 'SpiffWorkflow/…' for the code this report looks at, else None."""
    if "/SpiffWorkflow/" in path:
        return "SpiffWorkflow/" + path.split("/SpiffWorkflow/", 1)[1]
    if path.startswith(str(ROOT / "engine")):
        return str(Path(path).relative_to(ROOT))
    return None


def _package(path: str, func_name: str) -> str:
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
    """Top cumulative entries in engine/ and in SpiffWorkflow, and self time by package."""
    total = stats.total_tt
    engine_rows: list[ProfileRow] = []
    spiff_rows: list[ProfileRow] = []
    self_time: dict[str, float] = {}
    for (path, line, func_name), (_cc, calls, tt, cum, _callers) in stats.stats.items():
        package = _package(path, func_name)
        self_time[package] = self_time.get(package, 0.0) + tt
        where = _where(path)
        if where is not None:
            rows = spiff_rows if where.startswith("SpiffWorkflow") else engine_rows
            rows.append((cum, calls, f"{where}:{line} {func_name}"))
    by_package = sorted(self_time.items(), key=lambda kv: -kv[1])
    return "\n".join(
        [
            f"{name}, one instance ({STEPS_PER_INSTANCE} completions including the step "
            f"fetches): {1000 * total:.0f} ms under cProfile, which inflates every figure; "
            "read the shares.",
            "",
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
    )


# --- databases ---------------------------------------------------------------------------------


def sqlite_bytes(engine: Engine, path: Path) -> int:
    """Database file size once every connection is closed (SQLite then checkpoints the WAL)."""
    engine.dispose()
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def bench_sqlite(n: int, today: date, profile: bool) -> tuple[Result, str | None]:
    with tempfile.TemporaryDirectory(prefix="duban-bench-") as tmp:
        path = Path(tmp) / "bench.sqlite3"
        engine = make_engine(f"sqlite:///{path}")
        try:
            result, finished, report = bench_duban(
                "duban SQLite (file, WAL)", engine, n, today, profile
            )
            result.db_bytes = sqlite_bytes(engine, path) / finished
            result.notes.append(
                "DB bytes: the whole SQLite file (all tables and indexes, directory and spec "
                "included; WAL checkpointed on close, no VACUUM), divided by finished instances."
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
    schema = f"bench_{os.getpid()}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        yield schema
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


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


def describe_pg_bytes(before: dict[str, int], after: dict[str, int], finished: int) -> str:
    per = {k: v / finished for k, v in before.items()}
    main = ", ".join(f"{k} {per[k] / 1024:.1f}" for k in ("instance", "human_task", "history"))
    return (
        f"DB bytes: pg_total_relation_size summed over the schema's tables (heap, TOAST and "
        f"indexes; includes the 30 human_task and ~32 history rows per instance, dead row "
        f"versions left by the run, the directory and the deployed spec), divided by "
        f"{finished} finished instances. Per instance, KiB: {main}. "
        f"After VACUUM FULL: {sum(after.values()) / finished / 1024:.1f} KiB."
    )


def bench_postgres(url: str, n: int, today: date, profile: bool) -> tuple[Result, str | None]:
    with pg_schema(url) as schema:
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        try:
            result, finished, report = bench_duban("duban PostgreSQL", engine, n, today, profile)
            before = pg_table_bytes(engine, schema)
            pg_vacuum_full(engine)
            after = pg_table_bytes(engine, schema)
            result.db_bytes = sum(before.values()) / finished
            result.notes.append(describe_pg_bytes(before, after, finished))
            result.notes.append(
                "CPU: this process only; the PostgreSQL server's own CPU is not counted."
            )
        finally:
            engine.dispose()
    return result, report


# --- report ------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_section(pg_version: str | None) -> list[str]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return [
        "## Machine",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores ({affinity} usable by this process)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
        f"- SpiffWorkflow {version('SpiffWorkflow')}, SQLAlchemy {version('SQLAlchemy')}, "
        f"psycopg {version('psycopg')}, SQLite {sqlite3.sqlite_version}",
        f"- PostgreSQL server: {pg_version or 'not measured'}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
    ]


def table(results: list[Result]) -> list[str]:
    base = results[0].rate
    lines = [
        "| Variant | Completions/s (median of 3) | × raw state-only | Mean ms / completion "
        "| p95 ms | CPU ms / completion | State bytes / finished instance "
        "| DB bytes / finished instance |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        db = f"{r.db_bytes:,.0f}" if r.db_bytes is not None else "–"
        lines.append(
            f"| {r.name} | {r.rate:,.0f} | {r.rate / base:.2f} | {r.mean_ms:.2f} "
            f"| {r.p95_ms:.2f} | {r.cpu_ms:.2f} | {r.state_bytes:,.0f} | {db} |"
        )
    return lines


def render(
    results: list[Result],
    n: int,
    pg_version: str | None,
    full_blob_zlib: int,
    profile: str | None,
    pg_note: str | None,
) -> str:
    lines = [
        "# Engine benchmark: completing human steps of `task_routing`",
        "",
        f"Each instance: 1 lead + {SUPPORT_UNITS} supporting + {IMPLEMENT_UNITS} implementing "
        f"units = {STEPS_PER_INSTANCE} human steps. {REPETITIONS} repetitions of {n} instances "
        f"({STEPS_PER_INSTANCE * n} completions each) per variant, after one warm-up instance.",
        "",
        *table(results),
        "",
        "## What is timed",
        "",
        "- Raw rows: per step, load the instance (deserialize), take the first READY manual task, "
        "set the validated form data, `task.run()`, `do_engine_steps()`, dump (serialize). "
        "Starting instances is not timed.",
        "- duban rows: per step, a short read transaction fetching the instance's next READY "
        "`HumanTask` (id, position, form) — what a client does before acting — then one "
        "transaction `with sessionmaker.begin(): complete_task(...)`. Both are timed; starting "
        "instances (`hand_out`) is not.",
        "- State bytes: raw state-only = zlib-compressed state without spec (as duban stores "
        f"it); raw full blob = uncompressed `serialize_json` text (zlib would make it "
        f"{full_blob_zlib:,} bytes); duban = mean `length(Instance.state)` of finished "
        "instances.",
        "- CPU ms / completion: `time.process_time()` of this Python process over the timed "
        "loops. The project's target is ≤ 5 ms CPU per duban completion.",
        "",
        "## Notes",
        "",
    ]
    for r in results:
        lines += [f"- {r.name} — {note}" for note in r.notes]
    if pg_note:
        lines.append(f"- {pg_note}")
    if profile:
        lines += ["", "## Profile of one duban instance", "", profile]
    lines += ["", *machine_section(pg_version), ""]
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/engine.md")
    parser.add_argument(
        "--postgres",
        default=DEFAULT_PG,
        help="SQLAlchemy URL (postgresql+psycopg://...); '' to skip PostgreSQL",
    )
    parser.add_argument(
        "--instances", type=int, default=20, help="instances per repetition (default 20)"
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the cProfile run of one extra duban instance",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    n, today = args.instances, local_today(utcnow())
    specs = parse_specs()
    print(f"raw: {REPETITIONS} x {n} instances ...", file=sys.stderr)
    state_only, _ = bench_raw(RAW_STATE_ONLY, specs, state_only_codec(specs), n, today)
    full, blob = bench_raw(
        "raw SpiffWorkflow, full blob (serialize_json)", specs, full_blob_codec(), n, today
    )
    results = [state_only, full]
    pg_version = pg_reachable(args.postgres) if args.postgres else None
    want_profile = not args.no_profile
    print("duban SQLite ...", file=sys.stderr)
    sqlite_result, sqlite_profile = bench_sqlite(n, today, want_profile and pg_version is None)
    results.append(sqlite_result)
    profile, pg_note = sqlite_profile, None
    if pg_version is not None:
        print("duban PostgreSQL ...", file=sys.stderr)
        pg_result, profile = bench_postgres(args.postgres, n, today, want_profile)
        results.append(pg_result)
    else:
        pg_note = "PostgreSQL was not measured (skipped or unreachable)."
    report = render(results, n, pg_version, len(zlib.compress(blob, 6)), profile, pg_note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
