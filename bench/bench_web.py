"""The web layer at scale, on PostgreSQL: the inbox over a million human steps, and the JSON API's
completion throughput under gunicorn.

Part A — inbox at scale: the real directory, lists and processes (`duban.cli.seed`), then
--instances top-level `task_routing` instances and --tasks-per-instance human steps each, copied
in with COPY; then `engine.access.inbox` and the signed-in `GET /inbox` page (Flask test client)
are timed for one unit's liaison and for the office director.

Part B — API throughput: a fresh schema, seeded, both lists handed out (--rounds times), bearer
tokens for every liaison and the office staff; gunicorn (-w 4, sync workers) serves the app and
--clients threads loop `GET /api/v1/inbox` → `POST /api/v1/tasks/{id}/complete` for --seconds;
then one in-process run of the same loop, counted and profiled.

Usage: .venv/bin/python bench/bench_web.py [--out FILE] [--json FILE] [--postgres URL]
       [--instances N] [--tasks-per-instance N] [--clients N] [--seconds S] [--part a|b|both]
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import http.client
import json
import os
import pstats
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Flask
from flask.testing import FlaskClient
from machine import machine_busy, machine_lines  # bench/machine.py (run as a script)
from report_rows import STARTUP_S
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from duban.cli import DEMO_PASSWORD, demo_accounts, seed
from engine.access import InboxFilter, Viewer, inbox, viewer_for
from engine.accounts import create_account, issue_token
from engine.clock import FixedClock, utcnow
from engine.db import make_engine, scratch_schema, session_factory, upgrade
from engine.directory import hand_over, holders
from engine.models import (
    Account,
    Holding,
    HumanTask,
    Instance,
    InstanceStatus,
    Jurisdiction,
    Person,
    Plan,
    PlanTask,
    Position,
    PositionKind,
    Role,
    TaskState,
    Unit,
)
from engine.routing import PROCESS_ID, RoutingSettings, business_key, hand_out, routing_data
from engine.runtime import Actor, complete_task, start_instance
from engine.specs import SPEC_CACHE
from engine.stats import backfill_step_plans, rebuild_tallies
from web import create_app

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LIAISON_UNIT = "县农业农村局"
OFFICE_JURISDICTION = "weixi"
RUNNING_SHARE = 0.4  # of the bulk instances; the rest are completed
READY_SHARE_OF_RUNNING = 0.5  # of a running instance's steps: 0.4 × 0.5 = 20 % READY overall
DUE_SPREAD = timedelta(days=60)
COPY_BATCH = 100_000
PAGE = 50
SEED = 20261125
TOKEN_KINDS = (PositionKind.LIAISON, PositionKind.OFFICE_DIRECTOR, PositionKind.OFFICE_STAFF)

Answer = Callable[..., dict[str, Any]]


def load_answer() -> Answer:
    """tests.helpers.answer: the form data the test suite submits for each form."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.helpers import answer

    return answer


# --- PostgreSQL --------------------------------------------------------------------------------


PG_SETTINGS = ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit")


def pg_server(url: str) -> str:
    """The server's version and the settings that matter here."""
    probe = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with probe.connect() as conn:
            found = [str(conn.scalar(text("SHOW server_version")))]
            found += [f"{name} {conn.scalar(text(f'SHOW {name}'))}" for name in PG_SETTINGS]
    finally:
        probe.dispose()
    return f"{found[0]} ({', '.join(found[1:])})"


@contextmanager
def pg_schema(url: str, suffix: str) -> Iterator[str]:
    """A fresh schema `benchweb_<pid><suffix>`, dropped afterwards."""
    with scratch_schema(url, f"benchweb_{os.getpid()}{suffix}") as schema:
        yield schema


def schema_engine(url: str, schema: str, app_name: str) -> Engine:
    options = {"options": f"-csearch_path={schema}", "application_name": app_name}
    return make_engine(url, connect_args=options)


def schema_url(url: str, schema: str, app_name: str) -> str:
    """The same database as a URL a separate process can use (psycopg reads both options)."""
    sep = "&" if "?" in url else "?"
    return (
        f"{url}{sep}options={quote(f'-csearch_path={schema}', safe='')}&application_name={app_name}"
    )


def seeded_world(engine: Engine) -> sessionmaker[Session]:
    """Schema, directory, lists, processes, and demo sign-ins for every liaison and director."""
    SPEC_CACHE.clear()  # version ids restart in every schema
    upgrade(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        seed(session)
        demo_accounts(session)
    return factory


@contextmanager
def counted_sql(engine: Engine) -> Iterator[dict[str, int]]:
    counts = {"statements": 0}

    def on_statement(*_args: Any) -> None:
        counts["statements"] += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield counts
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)


@dataclass(frozen=True)
class Traced:
    statement: str
    parameters: Any
    seconds: float


@contextmanager
def traced_sql(engine: Engine) -> Iterator[list[Traced]]:
    """Every statement run, with its parameters and its time in the driver (sent to result)."""
    traced: list[Traced] = []
    started: list[float] = []

    def before(*_args: Any) -> None:
        started.append(time.perf_counter())

    def after(_c: Any, _cur: Any, statement: str, parameters: Any, *_a: Any) -> None:
        traced.append(Traced(statement, parameters, time.perf_counter() - started.pop()))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield traced
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def by_table(traced: list[Traced]) -> str:
    """'instance ×50, plan_task ×10, …': the statements grouped by the first table they read."""
    counts: dict[str, int] = {}
    for t in traced:
        match = re.search(r"\bFROM (\w+)", t.statement) or re.match(r"(\w+ \w+)", t.statement)
        key = match.group(1) if match else "?"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


# --- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


@dataclass(frozen=True)
class Timing:
    samples: list[float]

    @property
    def p50(self) -> float:
        return percentile(self.samples, 50)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    @property
    def p99(self) -> float:
        return percentile(self.samples, 99)


def timed(runs: int, action: Callable[[], Any], budget: float, warmup: int = 5) -> Timing:
    """`runs` timed calls after `warmup` untimed ones, fewer if they take over `budget` s."""
    for _ in range(warmup):
        action()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < runs and (len(samples) < 20 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        action()
        samples.append(time.perf_counter() - t0)
    return Timing(samples)


# --- part A: the bulk data ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepKind:
    element_id: str
    name: str
    form: str


ACKNOWLEDGE = StepKind("acknowledge", "签收", "acknowledge")
SET_PLAN = StepKind("set_plan", "制定工作计划和时限", "plan")
CONTRIBUTE = StepKind("contribute", "提供配合材料", "contribute")
REPORT = StepKind("report_progress", "报送落实进展", "report")
CONSOLIDATE = StepKind("consolidate", "汇总反馈", "consolidate")
REVIEW = StepKind("review", "审核办结", "review")
EXTENSION = StepKind("report_extension", "审批延期申请", "decide_extension")

# (kind, unit id, position id): one human step of an item as the processes would assign it.
Slot = tuple[StepKind, int, int]


def item_slots(task: PlanTask, liaison: dict[int, int], staff: dict[int, int]) -> list[Slot]:
    """Every human step a routed item of `task` has: each unit acknowledges, the lead plans,
    contributors contribute, implementers report, the lead consolidates, the office reviews
    (and decides one extension request)."""
    units = sorted(task.units, key=lambda u: u.ordinal)
    leads = [u.unit_id for u in units if u.role == Role.LEAD]
    office = task.plan.jurisdiction.office_unit_id
    assert office is not None
    slots: list[Slot] = [(ACKNOWLEDGE, u.unit_id, liaison[u.unit_id]) for u in units]
    slots.append((SET_PLAN, leads[0], liaison[leads[0]]))
    for u in units:
        if u.role == Role.SUPPORT or (u.role == Role.LEAD and u.unit_id != leads[0]):
            slots.append((CONTRIBUTE, u.unit_id, liaison[u.unit_id]))
        elif u.role == Role.IMPLEMENT:
            slots.append((REPORT, u.unit_id, liaison[u.unit_id]))
    slots.append((CONSOLIDATE, leads[0], liaison[leads[0]]))
    slots += [(REVIEW, office, staff[office]), (EXTENSION, office, staff[office])]
    return slots


@dataclass(frozen=True)
class BulkSource:
    """What the bulk rows are made from: the plan tasks with their steps, and one real blob."""

    plan_tasks: list[tuple[int, str, list[Slot]]]  # id, business key, slots
    holder: dict[int, int]  # position id -> person id holding it
    version_id: int
    state: bytes
    serializer_version: str


def position_map(session: Session, kind: PositionKind) -> dict[int, int]:
    rows = session.execute(select(Position.unit_id, Position.id).where(Position.kind == kind))
    return dict(rows.all())


def finished_state(session: Session, plan_task: PlanTask, answer: Answer) -> Instance:
    """Hand out one real item and complete all its steps, inside the caller's transaction."""
    now = utcnow()
    plan = session.get(Plan, plan_task.plan_id)
    assert plan is not None
    (root,) = hand_out(session, plan.key, [plan_task.number], now)
    tree = select(Instance.id).where(Instance.root_id == root.id)
    while True:
        step = session.scalar(
            select(HumanTask)
            .where(HumanTask.instance_id.in_(tree), HumanTask.state == TaskState.READY)
            .order_by(HumanTask.id)
            .limit(1)
        )
        if step is None:
            break
        data = answer(step.form, FixedClock(now))
        complete_task(session, step.id, Actor(position_id=step.position_id), data, now)
    session.refresh(root)
    if root.status != InstanceStatus.COMPLETED:
        raise RuntimeError("the real item did not finish")
    return root


def bulk_source(factory: sessionmaker[Session], answer: Answer) -> BulkSource:
    with factory() as session:
        liaison = position_map(session, PositionKind.LIAISON)
        staff = position_map(session, PositionKind.OFFICE_STAFF)
        tasks = list(session.scalars(select(PlanTask).order_by(PlanTask.id)))
        plan_tasks = [(t.id, business_key(t.plan, t), item_slots(t, liaison, staff)) for t in tasks]
        holder = {
            position_id: people[0].id
            for position_id in [*liaison.values(), *staff.values()]
            if (people := holders(session, position_id))
        }
        root = finished_state(session, tasks[0], answer)
        real = BulkSource(
            plan_tasks, holder, root.process_version_id, root.state, root.serializer_version
        )
        session.rollback()  # the real item was only needed for its state
    return real


def next_id(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text(f"SELECT coalesce(max(id), 0) + 1 FROM {table}")) or 1)


def copy_rows(engine: Engine, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> int:
    """COPY the rows in, committing every COPY_BATCH rows; returns how many."""
    raw = engine.raw_connection()
    copied = 0
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    try:
        batch: list[tuple] = []
        for row in rows:
            batch.append(row)
            if len(batch) == COPY_BATCH:
                copied += _copy_batch(raw, statement, batch)
                batch = []
        copied += _copy_batch(raw, statement, batch)
        with raw.cursor() as cur:
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
        raw.commit()
    finally:
        raw.close()
    return copied


def _copy_batch(raw: Any, statement: str, batch: list[tuple]) -> int:
    if not batch:
        return 0
    with raw.driver_connection.cursor() as cur, cur.copy(statement) as copy:
        for row in batch:
            copy.write_row(row)
    raw.commit()
    return len(batch)


INSTANCE_COLUMNS = (
    *("id", "process_version_id", "process_id", "business_key", "root_id", "has_children"),
    *("plan_task_id", "status", "state", "serializer_version", "revision", "created_at"),
    *("updated_at", "completed_at"),
)
TASK_COLUMNS = (
    *("id", "instance_id", "spiff_task_id", "element_id", "name", "form", "unit_id"),
    *("position_id", "state", "due_at", "created_at", "completed_at", "completed_by_id"),
    "form_data",
)


@dataclass(frozen=True)
class BulkPlan:
    instances: int
    tasks_per_instance: int
    first_instance: int
    first_task: int
    now: datetime


def running(index: int) -> bool:
    return (index * 2654435761) % 1000 < RUNNING_SHARE * 1000  # spread, deterministic


def instance_rows(bp: BulkSource, plan: BulkPlan) -> Iterator[tuple]:
    for i in range(plan.instances):
        iid = plan.first_instance + i
        plan_task_id, key, _ = bp.plan_tasks[i % len(bp.plan_tasks)]
        created = plan.now - timedelta(days=90) + timedelta(minutes=i % 129_600)
        is_running = running(i)
        yield (
            iid,
            bp.version_id,
            PROCESS_ID,
            f"{key}~{i}",  # a business key names one top-level instance
            iid,
            True,
            plan_task_id,
            (InstanceStatus.RUNNING if is_running else InstanceStatus.COMPLETED).value,
            bp.state,
            bp.serializer_version,
            1,
            created,
            created + timedelta(days=5),
            None if is_running else created + timedelta(days=30),
        )


def task_rows(bp: BulkSource, plan: BulkPlan, form_data: dict[str, str]) -> Iterator[tuple]:
    rng = random.Random(SEED)
    spread = int(DUE_SPREAD.total_seconds())
    task_id = plan.first_task
    for i in range(plan.instances):
        _, _, slots = bp.plan_tasks[i % len(bp.plan_tasks)]
        k = plan.tasks_per_instance
        chosen = rng.sample(slots, k) if len(slots) >= k else rng.choices(slots, k=k)
        is_running = running(i)
        for kind, unit_id, position_id in chosen:
            ready = is_running and rng.random() < READY_SHARE_OF_RUNNING
            due = plan.now + timedelta(seconds=rng.randint(-spread, spread))
            created = due - timedelta(days=7)
            done = None if ready else created + timedelta(hours=rng.randint(1, 24 * 14))
            yield (
                task_id,
                plan.first_instance + i,
                str(uuid.uuid4()),
                kind.element_id,
                kind.name,
                kind.form,
                unit_id,
                position_id,
                (TaskState.READY if ready else TaskState.COMPLETED).value,
                due,
                created,
                done,
                None if ready else bp.holder.get(position_id),
                None if ready else form_data[kind.form],
            )
            task_id += 1


@dataclass
class Loaded:
    instances: int = 0
    tasks: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    table_bytes: dict[str, int] = field(default_factory=dict)
    state_bytes: int = 0
    revision: str = ""
    indexes: list[str] = field(default_factory=list)


@contextmanager
def phase(loaded: Loaded, name: str) -> Iterator[None]:
    print(f"  {name} ...", file=sys.stderr)
    t0 = time.perf_counter()
    yield
    loaded.seconds[name] = time.perf_counter() - t0


def bulk_load(engine: Engine, args: argparse.Namespace, answer: Answer) -> Loaded:
    loaded = Loaded()
    with phase(loaded, "migrate + seed + demo sign-ins"):
        factory = seeded_world(engine)
    with phase(loaded, "one real item, completed and rolled back (for its state blob)"):
        bp = bulk_source(factory, answer)
    loaded.state_bytes = len(bp.state)
    now = utcnow()
    plan = BulkPlan(
        args.instances,
        args.tasks_per_instance,
        next_id(engine, "instance"),
        next_id(engine, "human_task"),
        now,
    )
    clock = FixedClock(now)
    form_data = {
        kind.form: json.dumps(answer(kind.form, clock), ensure_ascii=False)
        for kind in (ACKNOWLEDGE, SET_PLAN, CONTRIBUTE, REPORT, CONSOLIDATE, REVIEW, EXTENSION)
    }
    with phase(loaded, f"COPY {plan.instances:,} instances"):
        loaded.instances = copy_rows(engine, "instance", INSTANCE_COLUMNS, instance_rows(bp, plan))
    with phase(loaded, f"COPY {plan.instances * plan.tasks_per_instance:,} human tasks"):
        loaded.tasks = copy_rows(engine, "human_task", TASK_COLUMNS, task_rows(bp, plan, form_data))
    with (
        phase(loaded, "VACUUM ANALYZE instance, human_task"),
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
    ):
        conn.exec_driver_sql("VACUUM ANALYZE instance")
        conn.exec_driver_sql("VACUUM ANALYZE human_task")
    # The copied steps bypassed the engine: their lists and roles are copied onto them and
    # the completed ones tallied, once, from the rows (engine.stats).
    with (
        phase(loaded, "copy lists and roles onto the steps, tally the completed ones"),
        engine.begin() as conn,
    ):
        backfill_step_plans(conn)
        rebuild_tallies(conn)
    loaded.table_bytes = table_bytes(engine, ("instance", "human_task"))
    loaded.revision, loaded.indexes = schema_facts(engine)
    return loaded


def schema_facts(engine: Engine) -> tuple[str, list[str]]:
    """The migration the schema is at, and the index definitions on `human_task`."""
    with engine.connect() as conn:
        revision = str(conn.scalar(text("SELECT version_num FROM alembic_version")))
        indexes = conn.scalars(
            text(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = 'human_task' ORDER BY indexname"
            )
        )
        return revision, [re.sub(r" ON \S+\.", " ON ", d) for d in indexes]


def table_bytes(engine: Engine, tables: Sequence[str]) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.scalar(text(f"SELECT pg_total_relation_size('{t}')")) or 0) for t in tables
        }


# --- part A: measurements ----------------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    label: str
    login: str
    scope: str


@dataclass(frozen=True)
class PageTrace:
    """One instrumented page request: its statements and its whole time."""

    statements: list[Traced]
    seconds: float

    @property
    def db_seconds(self) -> float:
        return sum(t.seconds for t in self.statements)


@dataclass
class InboxResult:
    who: Who
    total: int
    query: Timing
    page: Timing
    trace: PageTrace
    explain: list[str]


def liaison_login(session: Session, unit_name: str) -> str:
    unit = session.scalar(select(Unit).where(Unit.name == unit_name))
    assert unit is not None
    position = session.scalar(
        select(Position).where(Position.unit_id == unit.id, Position.kind == PositionKind.LIAISON)
    )
    assert position is not None
    person = holders(session, position.id)[0]
    account = session.scalar(select(Account).where(Account.person_id == person.id))
    assert account is not None
    return account.login


def director_login(session: Session, code: str) -> str:
    jurisdiction = session.scalar(select(Jurisdiction).where(Jurisdiction.code == code))
    assert jurisdiction is not None
    position = session.scalar(
        select(Position).where(
            Position.unit_id == jurisdiction.office_unit_id,
            Position.kind == PositionKind.OFFICE_DIRECTOR,
        )
    )
    assert position is not None
    person = holders(session, position.id)[0]
    account = session.scalar(select(Account).where(Account.person_id == person.id))
    assert account is not None
    return account.login


def viewer_of(factory: sessionmaker[Session], login: str) -> Viewer:
    with factory() as session:
        account = session.scalar(select(Account).where(Account.login == login))
        assert account is not None
        return viewer_for(session, account)


def signed_in(app: Flask, login: str) -> FlaskClient:
    """A browser signed in through the real login form (CSRF token included)."""
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    token = match.group(1) if match else ""
    response = client.post(
        "/login", data={"login": login, "password": DEMO_PASSWORD, "csrf_token": token}
    )
    if response.status_code != 302:
        raise RuntimeError(f"sign-in as {login} failed: {response.status_code}")
    return client


def explain(engine: Engine, statements: list[Traced]) -> list[str]:
    plans = []
    with engine.connect() as conn:
        for t in statements:
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + t.statement, t.parameters)
            plans.append(t.statement + "\n\n" + "\n".join(r[0] for r in rows.all()))
    return plans


def measure_inbox(
    engine: Engine, factory: sessionmaker[Session], app: Flask, who: Who, args: argparse.Namespace
) -> InboxResult:
    viewer = viewer_of(factory, who.login)
    filters = InboxFilter(scope=who.scope)

    def query() -> int:
        with factory() as session:
            _, total = inbox(session, viewer, utcnow(), filters, limit=PAGE)
        return total

    total = query()
    query_timing = timed(args.query_runs, query, args.budget)
    with traced_sql(engine) as statements:
        query()
    page, trace = measure_page(engine, app, who, args)
    return InboxResult(who, total, query_timing, page, trace, explain(engine, statements))


def measure_page(
    engine: Engine, app: Flask, who: Who, args: argparse.Namespace
) -> tuple[Timing, PageTrace]:
    client = signed_in(app, who.login)
    url = f"/inbox?scope={who.scope}"

    def page() -> None:
        response = client.get(url)
        if response.status_code != 200 or b'id="inbox"' not in response.data:
            raise RuntimeError(f"GET {url} as {who.login}: {response.status_code}")

    timing = timed(args.page_runs, page, args.budget)
    with traced_sql(engine) as statements:
        t0 = time.perf_counter()
        page()
        seconds = time.perf_counter() - t0
    return timing, PageTrace(statements, seconds)


@dataclass(frozen=True)
class UnitShare:
    name: str
    rows: int
    ready: int
    median_rows: float
    median_ready: float
    max_ready: int
    units: int


def unit_share(factory: sessionmaker[Session], unit_name: str) -> UnitShare:
    with factory() as session:
        per_unit = session.execute(
            select(
                HumanTask.unit_id,
                func.count(),
                func.count().filter(HumanTask.state == TaskState.READY),
            ).group_by(HumanTask.unit_id)
        ).all()
        unit_id = session.scalar(select(Unit.id).where(Unit.name == unit_name))
    mine = next(r for r in per_unit if r[0] == unit_id)
    return UnitShare(
        unit_name,
        mine[1],
        mine[2],
        statistics.median(r[1] for r in per_unit),
        statistics.median(r[2] for r in per_unit),
        max(r[2] for r in per_unit),
        len(per_unit),
    )


@dataclass
class PartA:
    loaded: Loaded
    share: UnitShare
    results: list[InboxResult]
    ready_total: int
    load_before: str
    dashboard: Timing | None = None


def viewers(session: Session) -> list[Who]:
    liaison = liaison_login(session, LIAISON_UNIT)
    director = director_login(session, OFFICE_JURISDICTION)
    return [
        Who(f"{LIAISON_UNIT} liaison", liaison, "mine"),
        Who("office director", director, "mine"),
        Who("office director, scope=all", director, "all"),
    ]


def measure_all(
    engine: Engine, factory: sessionmaker[Session], whos: list[Who], args: argparse.Namespace
) -> list[InboxResult]:
    app = web_app(factory, args.workdir)
    results = []
    for who in whos:
        print(f"  timing the inbox of the {who.label} ...", file=sys.stderr)
        results.append(measure_inbox(engine, factory, app, who, args))
    return results


def part_a(args: argparse.Namespace, answer: Answer) -> PartA:
    load_before = loadavg()
    with pg_schema(args.postgres, "") as schema:
        engine = schema_engine(args.postgres, schema, f"benchweb_{os.getpid()}_a")
        try:
            loaded = bulk_load(engine, args, answer)
            factory = session_factory(engine)
            with factory() as session:
                whos = viewers(session)
                ready_total = session.scalar(
                    select(func.count()).where(HumanTask.state == TaskState.READY)
                )
            share = unit_share(factory, LIAISON_UNIT)
            results = measure_all(engine, factory, whos, args)
            board = measure_dashboard(factory, whos[1], args)
        finally:
            engine.dispose()
    return PartA(loaded, share, results, int(ready_total or 0), load_before, board)


def measure_dashboard(
    factory: sessionmaker[Session], director: Who, args: argparse.Namespace
) -> Timing:
    """The office director's dashboard (`GET /dashboard`) over every item of the jurisdiction."""
    print("  timing the dashboard ...", file=sys.stderr)
    client = signed_in(web_app(factory, args.workdir), director.login)
    url = f"/dashboard?jurisdiction={OFFICE_JURISDICTION}"

    def page() -> None:
        response = client.get(url)
        if response.status_code != 200 or b'id="by-unit"' not in response.data:
            raise RuntimeError(f"GET {url}: {response.status_code}")

    return timed(args.page_runs, page, args.budget)


def web_app(factory: sessionmaker[Session], workdir: Path) -> Flask:
    attachments = str(workdir / "attachments")
    return create_app(
        {"DUBAN_SESSIONS": factory, "SECRET_KEY": "bench-web", "ATTACHMENTS_DIR": attachments}
    )


# --- part B: provisioning ----------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    login: str
    token: str
    unit: str
    kind: str


def office_staff_accounts(session: Session) -> None:
    """A person with a sign-in in every office staff seat still empty (demo_accounts now fills
    these seats itself; this keeps part B working with either)."""
    now = utcnow()
    for seat in session.scalars(
        select(Position).where(Position.kind == PositionKind.OFFICE_STAFF).order_by(Position.id)
    ):
        if holders(session, seat.id):
            continue
        person = Person(name=f"{seat.unit.name}{seat.title}", title=seat.title)
        session.add(person)
        hand_over(session, seat, person, now)
        create_account(session, person, person.name, DEMO_PASSWORD)


def issue_tokens(session: Session) -> list[Token]:
    """A bearer token for everyone holding a liaison or office seat, one per account."""
    rows = session.execute(
        select(Account, Position)
        .join(Holding, Holding.person_id == Account.person_id)
        .join(Position, Position.id == Holding.position_id)
        .where(Holding.ended_at.is_(None), Position.kind.in_(TOKEN_KINDS))
        .order_by(Position.id)
    ).all()
    tokens, seen = [], set()
    for account, position in rows:
        if account.id not in seen:
            seen.add(account.id)
            token = issue_token(session, account, "bench")
            tokens.append(Token(account.login, token, position.unit.name, position.kind.value))
    return tokens


def start_round(session: Session, round_no: int) -> int:
    """Every item of every list again, under business keys of their own."""
    now, settings, started = utcnow(), RoutingSettings(), 0
    for task in session.scalars(select(PlanTask).order_by(PlanTask.id)):
        key = f"{business_key(task.plan, task)}~r{round_no}"
        data = routing_data(session, task, now, settings)
        start_instance(session, PROCESS_ID, data, key, now, plan_task_id=task.id)
        started += 1
    return started


@dataclass
class Provisioned:
    tokens: list[Token]
    items: int
    ready: int
    seconds: float


def provision(engine: Engine, rounds: int) -> Provisioned:
    t0 = time.perf_counter()
    factory = seeded_world(engine)
    with factory.begin() as session:
        office_staff_accounts(session)
        tokens = issue_tokens(session)
    items = 0
    for round_no in range(rounds):
        print(f"  handing out round {round_no + 1} of {rounds} ...", file=sys.stderr)
        with factory.begin() as session:
            if round_no == 0:
                items += len(hand_out(session, "weixi-2023-15", None, utcnow()))
                items += len(hand_out(session, "dehong-2023", None, utcnow()))
            else:
                items += start_round(session, round_no)
    return Provisioned(tokens, items, ready_steps(factory), time.perf_counter() - t0)


def ready_steps(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return int(
            session.scalar(select(func.count()).where(HumanTask.state == TaskState.READY)) or 0
        )


# --- part B: CPU accounting --------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[1]) == pid:
                    found.append(int(entry.name))
    return found


def postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
    return pids


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class CpuSnapshot:
    server: dict[int, float]
    backends: dict[int, float]
    postgres: dict[int, float]
    client: float
    machine: tuple[float, float]


def snapshot(server_pids: list[int], backend_pids: list[int]) -> CpuSnapshot:
    return CpuSnapshot(
        {p: proc_cpu(p) for p in server_pids},
        {p: proc_cpu(p) for p in backend_pids},
        {p: proc_cpu(p) for p in postgres_pids()},
        time.process_time(),
        machine_busy(),
    )


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU of the processes alive at both ends: one that exited in between reads 0 at the end
    (a pool letting an overflow connection go ends its backend), which would count negative."""
    return sum(after[p] - before[p] for p in before if after.get(p, 0.0) >= before[p])


def backend_pids(engine: Engine, app_name: str) -> list[int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
            {"name": app_name},
        )
        return [int(r[0]) for r in rows]


# --- part B: gunicorn and the clients ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(
    database_url: str, workdir: Path, workers: int, threads: int
) -> Iterator[tuple[subprocess.Popen[bytes], int, Startup]]:
    port = free_port()
    ready = workdir / "workers-ready"
    ready.mkdir(parents=True, exist_ok=True)
    for stale in ready.iterdir():
        stale.unlink()
    env = {
        **os.environ,
        "DUBAN_DATABASE_URL": database_url,
        "DUBAN_SECRET_KEY": "bench-web-" + uuid.uuid4().hex,
        "DUBAN_VAR": str(workdir),
        "DUBAN_BENCH_READY": str(ready),
    }
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        *("-c", str(ROOT / "bench" / "gunicorn_ready.py")),
        *("-w", str(workers), "--threads", str(threads), "-b", f"127.0.0.1:{port}"),
        *("--log-level", "warning", "--error-logfile", str(workdir / "gunicorn.log")),
        "web:create_app()",
    ]
    launched = time.perf_counter()
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        wait_ready(port, server)
        answered = time.perf_counter()
        wait_workers(ready, workers, server)
        yield server, port, Startup(answered - launched, time.perf_counter() - launched)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@dataclass(frozen=True)
class Startup:
    """Seconds from launching gunicorn to its first answer, and to every worker having loaded
    the app (polled every 20 ms)."""

    first_answer: float
    all_workers: float


def wait_workers(ready: Path, workers: int, server: subprocess.Popen[bytes]) -> None:
    """Until every worker has loaded the app (bench/gunicorn_ready.py)."""
    deadline = time.monotonic() + 60
    while len(list(ready.iterdir())) < workers:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn: {len(list(ready.iterdir()))} of {workers} workers up")
        time.sleep(0.02)


def wait_ready(port: int, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/v1/openapi.json")
            if conn.getresponse().status == 200:
                conn.close()
                return
        time.sleep(0.02)
    raise RuntimeError("gunicorn did not come up")


# What a client completes after each inbox poll (--per-poll): the steps of the page, or one.
PER_POLL = {"page": PAGE, "first": 1}
PER_POLL_TEXT = {"page": "each step on the page it got, in turn", "first": "the first step"}


@dataclass(frozen=True)
class Call:
    at: float  # perf_counter when sent
    kind: str  # inbox | complete
    status: int  # 0: connection error
    seconds: float
    form: str = ""  # a completion's form (acknowledge, plan, review ...)


class ApiClient:
    """One keep-alive connection, acting in turn for each of its accounts."""

    def __init__(
        self, port: int, tokens: list[Token], answer: Answer, per_poll: int, backoff: float
    ) -> None:
        self.port, self.tokens, self.answer, self.per_poll = port, tokens, answer, per_poll
        self.backoff = backoff
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.calls: list[Call] = []
        self.conflicts: list[str] = []
        self.errors: list[str] = []
        self.idle = 0

    def request(
        self, kind: str, method: str, path: str, token: str, body: Any = None, form: str = ""
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        payload = None
        if body is not None:
            payload = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, payload, headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.calls.append(Call(t0, kind, 0, time.perf_counter() - t0, form))
            self.errors.append(f"{method} {path}: {exc!r}")
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return None
        self.calls.append(Call(t0, kind, response.status, time.perf_counter() - t0, form))
        if response.status == 409:
            self.conflicts.append(data.decode(errors="replace")[:200])
        elif response.status >= 400:
            self.errors.append(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data) if response.status == 200 else None

    def step(self, token: Token) -> bool:
        """One round: the account's inbox, then complete the steps on it (all of the page, or
        the first, by --per-poll). False: nothing to do."""
        page = self.request("inbox", "GET", "/api/v1/inbox", token.token)
        if not page or not page["steps"]:
            return False
        for step in page["steps"][: self.per_poll]:
            data = self.answer(step["form"], FixedClock(utcnow()))
            path = f"/api/v1/tasks/{step['id']}/complete"
            self.request("complete", "POST", path, token.token, {"data": data}, step["form"])
        return True

    def run(self, stop: threading.Event) -> None:
        """Each account in turn; one whose inbox was empty is asked again only after
        `backoff` seconds (its work waits on other units), as a polling client would."""
        not_before = [0.0] * len(self.tokens)
        turn = 0
        while not stop.is_set():
            i = turn % len(self.tokens)
            turn += 1
            if time.monotonic() < not_before[i]:
                if turn % len(self.tokens) == 0:
                    time.sleep(0.01)  # every account of this client is waiting
                continue
            if not self.step(self.tokens[i]):
                self.idle += 1
                not_before[i] = time.monotonic() + self.backoff


def deal(tokens: list[Token], clients: int) -> list[list[Token]]:
    """Accounts round-robin over the clients, in position order: an office's director and
    staff seats are consecutive, so two clients race for the office's steps (409s there)."""
    hands: list[list[Token]] = [[] for _ in range(clients)]
    for i, token in enumerate(tokens):
        hands[i % clients].append(token)
    return [h for h in hands if h]


@dataclass
class LoadRun:
    window: float
    calls: list[Call]
    conflicts: list[str]
    errors: list[str]
    idle: int
    before: CpuSnapshot
    after: CpuSnapshot
    workers: int
    log: str
    connections: dict[int, int]  # worker pid -> client connections it held after the warm-up
    worker_cpu: dict[int, float]  # worker pid -> CPU seconds over the window
    threads: int  # gunicorn --threads
    startup: Startup

    def of(self, kind: str, ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.kind == kind and (ok is None or (c.status == 200) == ok)]

    def completions(self) -> int:
        return len(self.of("complete", ok=True))


def drive_load(
    server: subprocess.Popen[bytes],
    port: int,
    hands: list[list[Token]],
    engine: Engine,
    app_name: str,
    args: argparse.Namespace,
    answer: Answer,
    startup: Startup,
) -> LoadRun:
    per_poll = PER_POLL[args.per_poll]
    clients = [ApiClient(port, hand, answer, per_poll, args.idle_backoff) for hand in hands]
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in clients]
    # Clients arrive one by one, as users do: connecting all at once let the first worker to
    # wake drain the whole accept backlog (14 of 16 connections on one worker, one core idle;
    # seen with ss on 2026-11-26). The stagger falls inside the warm-up.
    stagger = min(0.05, args.warmup / max(len(threads), 1) / 2)
    for thread in threads:
        thread.start()
        time.sleep(stagger)
    time.sleep(max(args.warmup - stagger * len(threads), 0))
    server_pids = [server.pid, *children(server.pid)]
    backends = backend_pids(engine, app_name)
    spread = connections_per_process(port, server_pids[1:])
    before = snapshot(server_pids, backends)
    start = time.perf_counter()
    time.sleep(args.seconds)
    end = time.perf_counter()
    after = snapshot(server_pids, backends)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    calls = [c for client in clients for c in client.calls if start <= c.at < end]
    return LoadRun(
        end - start,
        calls,
        [m for c in clients for m in c.conflicts],
        [m for c in clients for m in c.errors],
        sum(c.idle for c in clients),
        before,
        after,
        len(server_pids) - 1,
        "",
        spread,
        {p: after.server[p] - before.server[p] for p in server_pids[1:] if p in after.server},
        args.threads,
        startup,
    )


def connections_per_process(port: int, pids: list[int]) -> dict[int, int]:
    """Established connections to `port` held by each of `pids` (from /proc/net/tcp{,6} and
    each process's open sockets)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # ESTABLISHED
                    inodes.add(fields[9])
    held = {}
    for pid in pids:
        count = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    count += target.startswith("socket:[") and target[8:-1] in inodes
        held[pid] = count
    return held


# --- part B: one process, counted and profiled -------------------------------------------------


@dataclass
class InProcess:
    completions: int
    wall: float
    cpu: float
    statements: dict[str, list[int]]
    profile: str


class CountingClient:
    """The API loop through the Flask test client, counting SQL statements per request."""

    def __init__(self, app: Flask, engine: Engine, answer: Answer, per_poll: int) -> None:
        self.client, self.engine, self.answer = app.test_client(), engine, answer
        self.per_poll = per_poll
        self.statements: dict[str, list[int]] = {"inbox": [], "complete": []}

    def call(self, kind: str, method: str, path: str, token: str, body: Any = None) -> Any:
        with counted_sql(self.engine) as counts:
            response = self.client.open(
                path, method=method, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        self.statements[kind].append(counts["statements"])
        return response.get_json() if response.status_code == 200 else None

    def step(self, token: Token) -> int:
        """As ApiClient.step; returns the number of completions sent."""
        page = self.call("inbox", "GET", "/api/v1/inbox", token.token)
        if not page or not page["steps"]:
            return 0
        steps = page["steps"][: self.per_poll]
        for step in steps:
            data = self.answer(step["form"], FixedClock(utcnow()))
            path = f"/api/v1/tasks/{step['id']}/complete"
            self.call("complete", "POST", path, token.token, {"data": data})
        return len(steps)


def in_process(
    factory: sessionmaker[Session],
    engine: Engine,
    tokens: list[Token],
    args: argparse.Namespace,
    answer: Answer,
) -> InProcess:
    n = args.profile_loops
    client = CountingClient(web_app(factory, args.workdir), engine, answer, PER_POLL[args.per_poll])
    loop = cycle_steps(client, tokens)
    loop(10)  # warm-up: specs cached, templates and code paths loaded
    client.statements = {"inbox": [], "complete": []}
    wall, cpu = time.perf_counter(), time.process_time()
    done = loop(n)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    counted = {kind: list(counts) for kind, counts in client.statements.items()}
    # CPU time, not wall: waits for PostgreSQL (in engine.pgpipe's poll) would otherwise show
    # as the process's own cost.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    profiled = loop(n)
    profiler.disable()
    report = profile_report(pstats.Stats(profiler), profiled)
    return InProcess(done, wall, cpu, counted, report)


def cycle_steps(client: CountingClient, tokens: list[Token]) -> Callable[[int], int]:
    state = {"turn": 0}

    def loop(n: int) -> int:
        done = idle = 0
        while done < n and idle < len(tokens):
            token = tokens[state["turn"] % len(tokens)]
            state["turn"] += 1
            sent = client.step(token)
            if sent:
                done, idle = done + sent, 0
            else:
                idle += 1
        return done

    return loop


ProfileRow = tuple[float, int, str]


def _where(path: str) -> str | None:
    for top in ("engine", "web"):
        if path.startswith(str(ROOT / top)):
            return str(Path(path).relative_to(ROOT))
    return None


PACKAGES = (
    ("/SpiffWorkflow/", "SpiffWorkflow"),
    ("/sqlalchemy/", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("/jinja2/", "Jinja2"),
    ("/werkzeug/", "Flask + Werkzeug"),
    ("/flask", "Flask + Werkzeug"),
    ("/babel/", "Babel"),
    (str(ROOT / "engine"), "engine/"),
    (str(ROOT / "web"), "web/"),
    ("json", "json + zlib"),
    ("zlib", "json + zlib"),
)


def _package(path: str, func_name: str) -> str:
    label = f"{path} {func_name}"
    return next((name for needle, name in PACKAGES if needle in label), "other (stdlib)")


def profile_report(stats: pstats.Stats, completions: int, limit: int = 12) -> str:
    total = stats.total_tt
    rows: list[ProfileRow] = []
    self_time: dict[str, float] = {}
    for (path, line, func_name), (_cc, calls, tt, cum, _callers) in stats.stats.items():
        package = _package(path, func_name)
        self_time[package] = self_time.get(package, 0.0) + tt
        where = _where(path)
        if where is not None:
            rows.append((cum, calls, f"{where}:{line} {func_name}"))
    lines = [
        f"{completions} completions (with their inbox polls) in one process under cProfile, "
        f"CPU time: {1000 * total / max(completions, 1):.0f} ms per completion (cProfile "
        "inflates Python code; waits for PostgreSQL are not in it; read the shares).",
        "",
        f"Top {limit} cumulative in engine/ and web/:",
        "",
        "| Cumulative ms / completion | Share | Calls | Function |",
        "|---:|---:|---:|---|",
    ]
    lines += [
        f"| {1000 * cum / max(completions, 1):.1f} | {100 * cum / total:.0f}% | {calls} "
        f"| `{label}` |"
        for cum, calls, label in sorted(rows, reverse=True)[:limit]
    ]
    by_package = sorted(self_time.items(), key=lambda kv: -kv[1])
    lines += [
        "",
        "Self time by package: "
        + ", ".join(f"{label} {100 * tt / total:.0f}%" for label, tt in by_package)
        + ".",
    ]
    return "\n".join(lines)


# --- part B ------------------------------------------------------------------------------------


@dataclass
class PartB:
    provisioned: Provisioned
    clients: int
    load: LoadRun
    left_ready: int
    local: InProcess
    load_before: str


def part_b(args: argparse.Namespace, answer: Answer) -> PartB:
    app_name = f"benchweb_{os.getpid()}_b"
    with pg_schema(args.postgres, "_api") as schema:
        engine = schema_engine(args.postgres, schema, f"{app_name}_setup")
        try:
            provisioned = provision(engine, args.rounds)
            factory = session_factory(engine)
            hands = deal(provisioned.tokens, args.clients)
            load_before = loadavg()
            url = schema_url(args.postgres, schema, app_name)
            with gunicorn(url, args.workdir, args.workers, args.threads) as (server, port, up):
                print(
                    f"  {len(hands)} clients, {args.warmup:g} s warm-up + {args.seconds:g} s",
                    file=sys.stderr,
                )
                load = drive_load(server, port, hands, engine, app_name, args, answer, up)
            log = args.workdir / "gunicorn.log"
            load.log = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            left = ready_steps(factory)
            print("  one process, counted and profiled ...", file=sys.stderr)
            local = in_process(factory, engine, provisioned.tokens, args, answer)
        finally:
            engine.dispose()
    return PartB(provisioned, len(hands), load, left, local, load_before)


# --- report ------------------------------------------------------------------------------------


def machine_section(server_version: str) -> list[str]:
    return machine_lines(
        f"Flask {version('flask')}, SQLAlchemy {version('SQLAlchemy')}, psycopg "
        f"{version('psycopg')}, SpiffWorkflow {version('SpiffWorkflow')}, gunicorn "
        f"{version('gunicorn')}",
        [f"- PostgreSQL server {server_version}"],
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def inbox_row(r: InboxResult) -> str:
    return (
        f"| {r.who.label} | {r.total:,} | {ms(r.query.p50)} | {ms(r.query.p95)} "
        f"| {ms(r.page.p50)} | {ms(r.page.p95)} | {len(r.query.samples)} / "
        f"{len(r.page.samples)} | {verdict(r.page.p95 < 0.05)} |"
    )


def inbox_table(results: list[InboxResult]) -> list[str]:
    return [
        "| Viewer | Open steps (count) | `inbox()` p50 ms | p95 ms | `GET /inbox` p50 ms "
        "| p95 ms | Runs (query / page) | Page p95 < 50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *[inbox_row(r) for r in results],
    ]


def page_notes(results: list[InboxResult]) -> list[str]:
    return [
        f"- {r.who.label}: one page request took {ms(r.trace.seconds)} ms, of which "
        f"{ms(r.trace.db_seconds)} ms in {len(r.trace.statements)} SQL statements "
        f"({by_table(r.trace.statements)})"
        for r in results
    ]


def explain_blocks(results: list[InboxResult]) -> list[str]:
    lines = []
    for r in results:
        lines += [
            "<details>",
            f"<summary>EXPLAIN (ANALYZE, BUFFERS) of the inbox queries — {r.who.label}</summary>",
            "",
            *[f"```\n{plan}\n```\n" for plan in r.explain],
            "</details>",
            "",
        ]
    return lines


def render_a(a: PartA, args: argparse.Namespace) -> list[str]:
    s, loaded = a.share, a.loaded
    return [
        "## Part A — the inbox over a million human steps",
        "",
        f"Seeded directory, lists and processes, then {loaded.instances:,} top-level "
        f"`{PROCESS_ID}` instances ({RUNNING_SHARE:.0%} running, the rest completed; plan "
        f"tasks round-robin over the 60 items; each holds the {loaded.state_bytes:,}-byte "
        f"state of a real finished item) and {loaded.tasks:,} human steps "
        f"({args.tasks_per_instance} per instance, drawn from the steps the item's units would "
        "get: acknowledge, plan, contribute, report, consolidate at the units' liaisons; "
        "review and extension decisions at the office staff). Steps of running instances are "
        f"READY with probability {READY_SHARE_OF_RUNNING:.0%}: {a.ready_total:,} READY "
        f"({a.ready_total / max(loaded.tasks, 1):.0%}); due dates uniform over now ± "
        f"{DUE_SPREAD.days} days. Then VACUUM ANALYZE. Load average before: {a.load_before}.",
        "",
        "| Load phase | Seconds |",
        "|---|---:|",
        *[f"| {name} | {sec:.1f} |" for name, sec in loaded.seconds.items()],
        "",
        *(
            [
                f"Dashboard (`GET /dashboard`, office director, {len(a.dashboard.samples)} runs): "
                f"p50 {ms(a.dashboard.p50)} ms, p95 {ms(a.dashboard.p95)} ms "
                f"(target p95 < 300 ms: {verdict(a.dashboard.p95 < 0.3)}).",
                "",
            ]
            if a.dashboard
            else []
        ),
        "Table sizes (pg_total_relation_size): "
        + ", ".join(f"`{t}` {b / 2**20:,.0f} MiB" for t, b in loaded.table_bytes.items())
        + ".",
        "",
        f"{s.name}: {s.rows:,} steps, {s.ready:,} READY (median over the {s.units} units with "
        f"steps: {s.median_rows:,.0f} steps, {s.median_ready:,.0f} READY; most READY in one "
        f"unit: {s.max_ready:,}).",
        "",
        f"Schema at migration `{loaded.revision}`; indexes on `human_task`:",
        "",
        *[f"- `{definition}`" for definition in loaded.indexes],
        "",
        *inbox_table(a.results),
        "",
        *page_notes(a.results),
        "",
        "### How it is measured",
        "",
        f"- `inbox()`: `engine.access.inbox(session, viewer, now, InboxFilter(scope=…), "
        f"limit={PAGE})` — the count and the first page of {PAGE} — in a new session each "
        f"time; up to {args.query_runs} runs after 5 warm-up runs.",
        "- `GET /inbox`: the Flask test client signed in through the login form (CSRF token "
        "included); the whole request: session and account lookup, rights (`viewer_for`), the "
        f"query, the template; up to {args.page_runs} runs after 5 warm-up runs.",
        f"- A series stops early (at 20 runs or more) once it has taken {args.budget:g} s.",
        "- The page notes come from one more request with every statement timed in the driver.",
        "",
        *explain_blocks(a.results),
    ]


def cpu_ms(seconds: float, completions: int) -> str:
    return f"{1000 * seconds / max(completions, 1):.1f}"


def startup_lines(up: Startup) -> list[str]:
    return [
        f"- **Start-up: {up.all_workers:.2f} s** from launching gunicorn to every worker having "
        f"loaded the app (first answer after {up.first_answer:.2f} s; schema already migrated "
        f"and seeded) — target < {STARTUP_S:g} s: {verdict(up.all_workers < STARTUP_S)}"
    ]


def worker_kind(threads: int) -> str:
    # gunicorn picks its worker class by --threads: one thread is the sync worker, which closes
    # the connection after each response; more is gthread, which keeps it alive.
    return "sync: a connection per request" if threads == 1 else "gthread, keep-alive"


def spread_text(run: LoadRun) -> str:
    return ", ".join(
        f"{run.connections.get(pid, 0)} ({100 * cpu / run.window:.0f} % of a core)"
        for pid, cpu in sorted(run.worker_cpu.items())
    )


def by_form(calls: list[Call]) -> dict[str, list[Call]]:
    found: dict[str, list[Call]] = {}
    for call in calls:
        found.setdefault(call.form, []).append(call)
    return found


def latency_row(label: str, calls: list[Call]) -> str:
    values = [c.seconds for c in calls]
    if not values:
        return f"| {label} | 0 | – | – | – |"
    return (
        f"| {label} | {len(values):,} | {ms(percentile(values, 50))} "
        f"| {ms(percentile(values, 95))} | {ms(percentile(values, 99))} |"
    )


def render_b(b: PartB, args: argparse.Namespace) -> list[str]:
    run, p = b.load, b.provisioned
    done = run.completions()
    rate = done / run.window
    conflicts = [c for c in run.calls if c.status == 409]
    client_err = [c for c in run.calls if 400 <= c.status < 500 and c.status != 409]
    server_err = [c for c in run.calls if c.status >= 500]
    dropped = [c for c in run.calls if c.status == 0]
    server_cpu = spent(run.before.server, run.after.server)
    backend_cpu = spent(run.before.backends, run.after.backends)
    pg_cpu = spent(run.before.postgres, run.after.postgres)
    client_cpu = run.after.client - run.before.client
    busy = run.after.machine[0] - run.before.machine[0]
    total = run.after.machine[1] - run.before.machine[1]
    others = busy - server_cpu - pg_cpu - client_cpu
    p99 = percentile([c.seconds for c in run.of("complete", ok=True)], 99) if done else 0.0
    local = b.local
    lines = [
        "## Part B — API throughput under gunicorn",
        "",
        f"Fresh schema, seeded; both lists handed out {args.rounds}× ({p.items} items, "
        f"{p.ready:,} READY steps at the start; setup {p.seconds:.0f} s). {len(p.tokens)} "
        "bearer tokens: every unit's liaison, each office's director and staff. gunicorn "
        f"`-w {args.workers} --threads {args.threads}` ({worker_kind(args.threads)}), "
        f"{run.workers} workers (client connections held after the warm-up: "
        f"{spread_text(run)}). {b.clients} client threads "
        "(http.client, keep-alive where the worker keeps it) in this process, the accounts "
        "dealt round-robin; each "
        "loops over its accounts: `GET /api/v1/inbox` → `POST /api/v1/tasks/{id}/complete` "
        f"of {PER_POLL_TEXT[args.per_poll]} with `tests.helpers.answer(form, clock)` at "
        f"today's date; an account whose inbox was empty is polled again after "
        f"{args.idle_backoff:g} s. "
        f"{args.warmup:g} s warm-up, then {run.window:.1f} s measured. Load average before: "
        f"{b.load_before}.",
        "",
        f"- **Completions/s: {rate:.1f}** ({done:,} in {run.window:.1f} s) — target ≥ 200: "
        f"{verdict(rate >= 200)}",
        f"- **p99 of a completion: {ms(p99) if done else '–'} ms** — target < 250 ms: "
        f"{verdict(done > 0 and p99 < 0.25)}",
        f"- 409 conflicts: {len(conflicts)}; other 4xx: {len(client_err)}; 5xx: "
        f"{len(server_err)}; connection errors: {len(dropped)}; inbox polls that found "
        f"nothing: {run.idle:,} (whole run); READY steps left: {b.left_ready:,}",
        *startup_lines(run.startup),
        "",
        "| Request | Count | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        latency_row("GET /api/v1/inbox (200)", run.of("inbox", ok=True)),
        latency_row("POST …/complete (200)", run.of("complete", ok=True)),
        latency_row("POST …/complete (409)", conflicts),
        *[
            latency_row(f"… of which `{form}` (200)", calls)
            for form, calls in sorted(by_form(run.of("complete", ok=True)).items())
        ],
        "",
        "| CPU over the measured window | Seconds | ms per completion | Share of 2 cores |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in (
        ("gunicorn master + workers", server_cpu),
        ("PostgreSQL backends of the app (by application_name)", backend_cpu),
        ("PostgreSQL, all processes (incl. other users' sessions)", pg_cpu),
        ("benchmark client (this process)", client_cpu),
        ("everything else on the machine", others),
        ("machine total busy", busy),
    ):
        lines.append(
            f"| {label} | {seconds:.1f} | {cpu_ms(seconds, done)} "
            f"| {100 * seconds / max(total, 1e-9):.0f}% |"
        )
    inbox_sql = local.statements["inbox"]
    complete_sql = local.statements["complete"]
    lines += [
        "",
        "### Where the time goes: the same loop in one process",
        "",
        f"Flask test client, one thread, no gunicorn, same schema afterwards: {local.completions} "
        f"completions and {len(inbox_sql)} inbox polls in {local.wall:.1f} s = "
        f"{local.completions / max(local.wall, 1e-9):.1f} completions/s, "
        f"{cpu_ms(local.cpu, local.completions)} ms CPU of this process per completion, its "
        "polls included (PostgreSQL's CPU not included). SQL statements per request: GET inbox "
        f"median {statistics.median(inbox_sql or [0]):.0f} (max {max(inbox_sql or [0])}), "
        f"POST complete median {statistics.median(complete_sql or [0]):.0f} "
        f"(max {max(complete_sql or [0])}).",
        "",
        local.profile,
    ]
    if run.errors or server_err:
        lines += ["", "<details><summary>Errors (first 10)</summary>", "", "```"]
        lines += [*run.errors[:10], "```", "</details>"]
    if conflicts:
        lines += ["", f"A 409, for example: `{run.conflicts[0][:160]}`"]
    if run.log.strip():
        lines += ["", "<details><summary>gunicorn log (tail)</summary>", "", "```"]
        lines += [run.log.strip(), "```", "</details>"]
    return lines


def render(a: PartA | None, b: PartB | None, args: argparse.Namespace, server: str) -> str:
    lines = [
        "# Web benchmark: the inbox at scale and the JSON API under gunicorn",
        "",
        f"PostgreSQL `{args.postgres}`, fresh schemas `benchweb_<pid>` (part A) and "
        "`benchweb_<pid>_api` (part B), dropped afterwards. Other processes shared this "
        "machine during the run; see the load averages and the CPU table.",
        "",
    ]
    if a is not None:
        lines += render_a(a, args)
    if b is not None:
        lines += render_b(b, args)
    lines += ["", *machine_section(server), ""]
    return "\n".join(lines)


def ms_of(timing: Timing) -> dict[str, float]:
    return {"p50_ms": 1000 * timing.p50, "p95_ms": 1000 * timing.p95, "runs": len(timing.samples)}


def figures_a(a: PartA | None) -> dict[str, Any] | None:
    """Part A's figures for bench/report.py."""
    if a is None:
        return None
    return {
        "instances": a.loaded.instances,
        "tasks": a.loaded.tasks,
        "load_before": a.load_before,
        "viewers": [
            {
                "viewer": r.who.label,
                "open_steps": r.total,
                "inbox": ms_of(r.query),
                "page": ms_of(r.page),
            }
            for r in a.results
        ],
        "dashboard": ms_of(a.dashboard) if a.dashboard else None,
    }


def figures_b(b: PartB | None) -> dict[str, Any] | None:
    """Part B's figures for bench/report.py."""
    if b is None:
        return None
    run = b.load
    done = [c.seconds for c in run.of("complete", ok=True)]
    return {
        "clients": b.clients,
        "workers": run.workers,
        "threads": run.threads,
        "startup_s": run.startup.all_workers,
        "first_answer_s": run.startup.first_answer,
        "connections_per_worker": list(run.connections.values()),
        "window_s": run.window,
        "completions": len(done),
        "completions_per_s": len(done) / run.window,
        "complete_ms": {
            f"p{p}": 1000 * percentile(done, p) if done else None for p in (50, 95, 99)
        },
        "conflicts": sum(c.status == 409 for c in run.calls),
        "errors": sum(c.status == 0 or (c.status >= 400 and c.status != 409) for c in run.calls),
        "load_before": b.load_before,
    }


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/web.md")
    parser.add_argument(
        "--json", type=Path, help="also write the figures as JSON here (bench/report.py reads it)"
    )
    parser.add_argument("--postgres", default=DEFAULT_PG, help="SQLAlchemy URL (psycopg)")
    parser.add_argument("--part", choices=("a", "b", "both"), default="both")
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--tasks-per-instance", type=int, default=10)
    parser.add_argument("--query-runs", type=int, default=200)
    parser.add_argument("--page-runs", type=int, default=100)
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds at most per timed series (part A)"
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--idle-backoff",
        type=float,
        default=0.5,
        help="seconds a client waits before polling an account whose inbox was empty again "
        "(part B; before 2026-11-26 it polled again at once, sleeping 50 ms only when all its "
        "accounts were idle)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn -w (part B)")
    parser.add_argument(
        "--threads", type=int, default=1, help="gunicorn --threads (part B; 1 = sync workers)"
    )
    parser.add_argument(
        "--per-poll",
        choices=sorted(PER_POLL),
        default="page",
        help="what a client completes after each inbox poll: every step on the page it got "
        "(default, as a liaison works down the list), or only the first (before 2026-11-26)",
    )
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=12,
        # Enough work for 35 s at ~200 completions/s: with 6, clients working down whole
        # pages left 685 of 4,242 steps and most late polls found nothing (2026-11-26).
        help="times both lists are handed out (part B)",
    )
    parser.add_argument(
        "--profile-loops",
        type=int,
        default=100,
        help="completions of the in-process run (part B)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    server = pg_server(args.postgres)
    answer = load_answer()
    a = b = None
    with tempfile.TemporaryDirectory(prefix="benchweb-") as workdir:
        args.workdir = Path(workdir)  # the apps' attachment store and gunicorn's var/
        if args.part in ("a", "both"):
            print("part A: inbox at scale", file=sys.stderr)
            a = part_a(args, answer)
        if args.part in ("b", "both"):
            print("part B: API throughput", file=sys.stderr)
            b = part_b(args, answer)
    report = render(a, b, args, server)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    if args.json:
        doc = {"postgres": server, "a": figures_a(a), "b": figures_b(b)}
        args.json.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
