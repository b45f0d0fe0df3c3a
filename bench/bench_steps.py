"""How the cost of one step of a routed item grows with its number of implementing units.

For each N (default 10, 50 and 129, the number of county-level divisions in Yunnan) and each
database (PostgreSQL in a fresh schema, SQLite in a temporary file): a synthetic prefecture with
129 counties, each county's government a unit, loaded through engine.directory.load_directory;
one list whose items have 1 lead, 3 supporting and N implementing units
(engine.tasklists.import_document), handed out with engine.routing.hand_out. Each item is then
driven to its end and these steps are timed (one transaction each, wall and CPU):

* an implementing unit's acknowledgement, and the last one (all branches end, the plan is ready);
* the lead's plan, which starts 3 + N branches;
* an implementing unit's interim report, its final report, and the last final report, which
  joins all branches (the lead's consolidation becomes ready).

A step that is over 50 ms at the largest N, or grows faster than N, is run once more on an
extra item under cProfile with every SQL statement timed.

Usage: .venv/bin/python bench/bench_steps.py [--units N ...] [--items K] [--postgres URL]
       [--no-sqlite] [--profile auto|all|none] [--out FILE] [--json FILE]
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench_engine import (  # bench/ (run as a script)
    code_digest,
    counted_sql,
    machine_section,
    pg_reachable,
    pg_schema,
    profile_tables,
)
from bench_web import Traced, traced_sql
from machine import load_average
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import local_today, utcnow
from engine.db import make_engine, session_factory, upgrade
from engine.deploy import deploy_directory
from engine.directory import load_directory
from engine.models import DeferredStart, HumanTask, Instance, InstanceStatus, TaskState
from engine.routing import hand_out
from engine.runtime import SPAWN_BATCH, SPAWN_INLINE, Actor, complete_task, start_deferred
from engine.specs import SPEC_CACHE
from engine.tasklists import import_document

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
COUNTIES = 129
SUPPORT_UNITS = 3
TARGET_MS = 50.0
PREFECTURE = "bench"

ACK = "acknowledge (an implementing unit)"
LAST_ACK = "last acknowledgement (set_plan becomes ready)"
PLAN = f"plan (3 + N branches: started with it up to {SPAWN_INLINE}, after its commit beyond)"
INTERIM = "interim report"
FINAL = "final report (not the last)"
JOIN = "last final report (joins all branches: consolidate becomes ready)"
BATCH = f"{SPAWN_BATCH} branch starts after the plan's commit (fan-outs over {SPAWN_INLINE})"
KINDS = (ACK, LAST_ACK, PLAN, BATCH, INTERIM, FINAL, JOIN)
# Stands for one batch of deferred branch starts (engine.runtime.start_deferred) in the runners.
BATCH_STEP_ID = -1


# --- the world, through the engine's own directory and list import ----------------------------


def county_government(i: int) -> str:
    return f"基准{i:03d}县人民政府"


def directory_toml() -> str:
    """A prefecture with an office, a lead and supporting departments, and 129 counties."""
    lines = [
        f'[[jurisdictions]]\ncode = "{PREFECTURE}"\nname = "基准州"\nlevel = "prefecture"\n',
        *(
            f'[[jurisdictions]]\ncode = "{PREFECTURE}.c{i:03d}"\nname = "基准{i:03d}县"\n'
            f'level = "county"\nparent = "{PREFECTURE}"\n'
            for i in range(1, COUNTIES + 1)
        ),
        f'[[units]]\nname = "基准州督查室"\njurisdiction = "{PREFECTURE}"\nkind = "party"\n',
        *(
            f'[[units]]\nname = "{name}"\njurisdiction = "{PREFECTURE}"\nkind = "department"\n'
            for name in department_names()
        ),
        *(
            f'[[units]]\nname = "{county_government(i)}"\njurisdiction = "{PREFECTURE}.c{i:03d}"'
            '\nkind = "local_government"\n'
            for i in range(1, COUNTIES + 1)
        ),
        f'[[offices]]\njurisdiction = "{PREFECTURE}"\nunit = "基准州督查室"\n',
    ]
    return "\n".join(lines)


def department_names() -> list[str]:
    return ["基准牵头局", *(f"基准配合局{i}" for i in range(1, SUPPORT_UNITS + 1))]


def plan_key(units: int) -> str:
    return f"steps-{units}"


def build_world(factory: sessionmaker[Session], sizes: list[int], items: int) -> None:
    """Directory, processes, and per N a list of `items` items with N implementing units."""
    lead, *support = department_names()
    with tempfile.TemporaryDirectory(prefix="duban-steps-") as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(directory_toml(), encoding="utf-8")
        with factory.begin() as session:
            load_directory(session, path, utcnow())
            deploy_directory(session, ROOT / "processes", deployed_by="bench")
            for units in sizes:
                tasks = [
                    {
                        "number": k,
                        "text": f"任务{k}",
                        "lead": [lead],
                        "support": support,
                        "implement": [county_government(i) for i in range(1, units + 1)],
                    }
                    for k in range(1, items + 1)
                ]
                plan = {
                    "key": plan_key(units),
                    "title": f"{units}个落实单位",
                    "jurisdiction": PREFECTURE,
                }
                import_document(session, {"plan": plan, "tasks": tasks}, "bench_steps")


def handed_out(factory: sessionmaker[Session], units: int) -> tuple[list[int], float]:
    """Hands out every item with N implementing units; their top-level instance ids, and
    hand_out's seconds per item (with the acknowledgement branches a wide fan-out starts
    after the commit)."""
    t0 = time.perf_counter()
    with factory.begin() as session:
        ids = [i.id for i in hand_out(session, plan_key(units), None, utcnow())]
    start_deferred(factory, utcnow())
    return ids, (time.perf_counter() - t0) / len(ids)


# --- driving one item ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    id: int
    element: str
    role: str | None
    position_id: int


def open_steps(factory: sessionmaker[Session], root_id: int, element: str) -> list[Step]:
    tree = select(Instance.id).where(Instance.root_id == root_id)
    with factory() as session:
        rows = session.execute(
            select(HumanTask.id, HumanTask.element_id, HumanTask.role, HumanTask.position_id)
            .where(
                HumanTask.instance_id.in_(tree),
                HumanTask.state == TaskState.READY,
                HumanTask.element_id == element,
            )
            .order_by(HumanTask.id)
        ).all()
    steps = []
    for id_, element, role, position in rows:
        assert position is not None  # every step of a routed item belongs to a position
        steps.append(Step(id_, element, role, position))
    return steps


def form_data(today: date) -> dict[str, dict[str, Any]]:
    due = (today + timedelta(days=30)).isoformat()
    return {
        "acknowledge": {},
        "set_plan": {
            "plan": "按月推进",
            "support_due": due,
            "implement_due": due,
            "final_due": due,
        },
        "contribute": {"content": "配合材料"},
        "interim": {"content": "阶段进展", "final": False},
        "final": {"content": "已完成", "final": True},
        "consolidate": {"summary": "汇总情况"},
        "review": {"decision": "close"},
    }


# Runs one step (its kind, or None when it is not timed) in its own transaction.
Runner = Callable[[str | None, Step, dict[str, Any]], None]


def drive_item(factory: sessionmaker[Session], root_id: int, run: Runner) -> None:
    """Every step of one item, in an order that makes an implementing unit's step the last of
    each fan-in; fails if the process does not move as expected."""
    data = form_data(local_today(utcnow()))
    acks = sorted(open_steps(factory, root_id, "acknowledge"), key=lambda s: s.role == "implement")
    for i, step in enumerate(acks):
        kind = None if step.role != "implement" else LAST_ACK if i == len(acks) - 1 else ACK
        run(kind, step, data["acknowledge"])
    (plan,) = open_steps(factory, root_id, "set_plan")
    run(PLAN, plan, data["set_plan"])
    while deferred(factory):  # what the scheduler's job does after a wide fan-out's step
        run(BATCH, Step(BATCH_STEP_ID, "", None, 0), {})
    for step in open_steps(factory, root_id, "contribute"):
        run(None, step, data["contribute"])
    for step in open_steps(factory, root_id, "report_progress"):
        run(INTERIM, step, data["interim"])
    reports = open_steps(factory, root_id, "report_progress")
    for i, step in enumerate(reports):
        run(JOIN if i == len(reports) - 1 else FINAL, step, data["final"])
    (consolidate,) = open_steps(factory, root_id, "consolidate")
    run(None, consolidate, data["consolidate"])
    (review,) = open_steps(factory, root_id, "review")
    run(None, review, data["review"])
    with factory() as session:
        root = session.get(Instance, root_id)
        if root is None or root.status != InstanceStatus.COMPLETED:
            raise RuntimeError(f"item {root_id} did not finish")


def deferred(factory: sessionmaker[Session]) -> bool:
    with factory() as session:
        return session.scalar(select(DeferredStart.instance_id).limit(1)) is not None


def complete(factory: sessionmaker[Session], step: Step, data: dict[str, Any]) -> None:
    if step.id == BATCH_STEP_ID:  # one transaction of start_deferred: one batch
        start_deferred(factory, utcnow(), limit=1)
        return
    with factory.begin() as session:
        complete_task(session, step.id, Actor(position_id=step.position_id), data, utcnow())


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)  # seconds
    cpu: list[float] = field(default_factory=list)
    statements: float = 0.0  # per step, counted on the warm-up item

    def figures(self) -> dict[str, float]:
        return {
            "count": len(self.wall),
            "wall_p50_ms": 1000 * statistics.median(self.wall),
            "wall_mean_ms": 1000 * statistics.fmean(self.wall),
            "cpu_p50_ms": 1000 * statistics.median(self.cpu),
            "cpu_mean_ms": 1000 * statistics.fmean(self.cpu),
            "statements": self.statements,
        }


def timed_runner(factory: sessionmaker[Session], samples: dict[str, Samples]) -> Runner:
    def run(kind: str | None, step: Step, data: dict[str, Any]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        complete(factory, step, data)
        if kind is not None:
            samples[kind].wall.append(time.perf_counter() - wall)
            samples[kind].cpu.append(time.process_time() - cpu)

    return run


def counting_runner(
    factory: sessionmaker[Session], engine: Engine
) -> tuple[Runner, Callable[[], dict[str, float]]]:
    """Counts the statements of each kind of step; the second callable gives the means."""
    counts: dict[str, list[int]] = {kind: [] for kind in KINDS}

    def run(kind: str | None, step: Step, data: dict[str, Any]) -> None:
        with counted_sql(engine) as counted:
            complete(factory, step, data)
        if kind is not None:
            counts[kind].append(counted["statements"])

    return run, lambda: {k: statistics.fmean(v) if v else 0.0 for k, v in counts.items()}


@dataclass
class Profiled:
    steps: int = 0
    profile: cProfile.Profile = field(default_factory=cProfile.Profile)
    statements: list[Traced] = field(default_factory=list)


def profiling_runner(
    factory: sessionmaker[Session], engine: Engine, wanted: set[str]
) -> tuple[Runner, dict[str, Profiled]]:
    found = {kind: Profiled() for kind in wanted}

    def run(kind: str | None, step: Step, data: dict[str, Any]) -> None:
        if kind not in found:
            complete(factory, step, data)
            return
        entry = found[kind]
        with traced_sql(engine) as statements:
            entry.profile.enable()
            complete(factory, step, data)
            entry.profile.disable()
        entry.statements += statements
        entry.steps += 1

    return run, found


# --- verdicts --------------------------------------------------------------------------------


def exponents(ns: list[int], values: list[float]) -> list[float]:
    """log(t2 / t1) / log(N2 / N1) between neighbouring Ns: 0 = constant, 1 = linear."""
    return [
        math.log(values[i + 1] / values[i]) / math.log(ns[i + 1] / ns[i])
        for i in range(len(ns) - 1)
    ]


def verdict(by_n: dict[int, dict[str, float]]) -> dict[str, Any]:
    """Growth of the p50 wall time with N (the verdict) and of the p50 CPU time (beside it:
    other work on a shared machine inflates wall times, CPU times much less), and the 50 ms
    target at the largest N."""
    ns = sorted(by_n)
    wall = [by_n[n]["wall_p50_ms"] for n in ns]
    cpu = [by_n[n]["cpu_p50_ms"] for n in ns]
    return {
        "largest_n": ns[-1],
        "ms_at_largest": wall[-1],
        "growth": wall[-1] / wall[0],
        "n_growth": ns[-1] / ns[0],
        "exponents": exponents(ns, wall),
        "cpu_exponents": exponents(ns, cpu),
        "under_target": wall[-1] < TARGET_MS,
        "at_most_linear": all(e <= 1.0 for e in exponents(ns, wall)),
    }


def failing(verdicts: dict[str, dict[str, Any]]) -> set[str]:
    return {k for k, v in verdicts.items() if not (v["under_target"] and v["at_most_linear"])}


# --- one database ----------------------------------------------------------------------------


@dataclass
class DatabaseRun:
    name: str
    kinds: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    hand_out_ms: dict[int, float] = field(default_factory=dict)
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)


def measure(run: DatabaseRun, engine: Engine, args: argparse.Namespace) -> None:
    """Every N in one database, their items taken in turn (10, 50, 129, 10, ...), so that other
    work on the machine and the tables' growth weigh on every N alike."""
    SPEC_CACHE.clear()  # version ids restart in every database
    upgrade(engine)
    factory = session_factory(engine)
    build_world(factory, args.units, args.items + 2)  # + a warm-up and a profiled item each
    ids: dict[int, list[int]] = {}
    samples: dict[int, dict[str, Samples]] = {}
    for units in args.units:
        ids[units], seconds = handed_out(factory, units)
        run.hand_out_ms[units] = 1000 * seconds
        counter, statements = counting_runner(factory, engine)
        drive_item(factory, ids[units][0], counter)  # the warm-up, counted
        samples[units] = {kind: Samples(statements=mean) for kind, mean in statements().items()}
    for k in range(1, args.items + 1):
        for units in args.units:
            drive_item(factory, ids[units][k], timed_runner(factory, samples[units]))
        print(f"  {run.name}: item {k} of {args.items} done for every N", file=sys.stderr)
    for units in args.units:
        for kind, found in samples[units].items():
            if found.wall:  # deferred batches only exist where the fan-out is wide
                run.kinds.setdefault(kind, {})[units] = found.figures()
    run.verdicts = {kind: verdict(by_n) for kind, by_n in run.kinds.items()}
    wanted = set(KINDS) if args.profile == "all" else failing(run.verdicts)
    if args.profile == "none" or not wanted:
        return
    largest = args.units[-1]
    profiler, profiled = profiling_runner(factory, engine, wanted)
    drive_item(factory, ids[largest][-1], profiler)
    run.profiles = {kind: profile_text(kind, largest, p) for kind, p in profiled.items()}


@contextmanager
def postgres_engine(url: str) -> Iterator[Engine]:
    with pg_schema(url) as schema:
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        try:
            yield engine
        finally:
            engine.dispose()


@contextmanager
def sqlite_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="duban-steps-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'steps.sqlite3'}")
        try:
            yield engine
        finally:
            engine.dispose()


def measure_database(
    name: str, engines: Callable[[], Any], args: argparse.Namespace
) -> DatabaseRun:
    run = DatabaseRun(name)
    with engines() as engine:
        measure(run, engine, args)
    return run


# --- report ----------------------------------------------------------------------------------


def normalized(statement: str) -> str:
    """One line per statement shape: whitespace folded, expanded IN lists collapsed."""
    text = re.sub(r"\s+", " ", statement).strip()
    text = re.sub(r"\((?:\s*(?:%\(\w+\)s|\?)\s*,?)+\)", "(…)", text)
    return text if len(text) <= 150 else text[:150] + "…"


def sql_table(statements: list[Traced], steps: int, limit: int = 8) -> list[str]:
    groups: dict[str, list[float]] = {}
    for t in statements:
        groups.setdefault(normalized(t.statement), []).append(t.seconds)
    total = sum(t.seconds for t in statements) or 1e-9
    lines = ["| Per step: count | ms | Share of SQL time | Statement |", "|---:|---:|---:|---|"]
    for text, times in sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:limit]:
        lines.append(
            f"| {len(times) / steps:.1f} | {1000 * sum(times) / steps:.2f} "
            f"| {100 * sum(times) / total:.0f}% | `{text}` |"
        )
    return lines


def profile_text(kind: str, units: int, p: Profiled) -> str:
    stats = pstats.Stats(p.profile)
    total = stats.total_tt  # type: ignore[attr-defined]  # set by pstats, missing in typeshed
    sql_ms = 1000 * sum(t.seconds for t in p.statements) / max(p.steps, 1)
    return "\n".join(
        [
            f"**{kind}**, N = {units}: {p.steps} step(s) on one extra item under cProfile, "
            f"{1000 * total / max(p.steps, 1):.1f} ms a step (inflated by cProfile; "
            f"read the shares); {len(p.statements) / max(p.steps, 1):.1f} SQL statements and "
            f"{sql_ms:.1f} ms in the driver a step.",
            "",
            *profile_tables(stats, limit=8),
            "",
            "SQL statements by time:",
            "",
            *sql_table(p.statements, max(p.steps, 1)),
        ]
    )


def met(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def render_database(run: DatabaseRun, ns: list[int]) -> list[str]:
    lines = [
        f"## {run.name}",
        "",
        "| Step | N | Steps timed | Wall p50 ms | Wall mean ms | CPU p50 ms | CPU mean ms "
        "| SQL statements |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        for n in ns:
            if n not in run.kinds.get(kind, {}):
                continue
            f = run.kinds[kind][n]
            lines.append(
                f"| {kind} | {n} | {f['count']:.0f} | {f['wall_p50_ms']:.1f} "
                f"| {f['wall_mean_ms']:.1f} | {f['cpu_p50_ms']:.1f} | {f['cpu_mean_ms']:.1f} "
                f"| {f['statements']:.1f} |"
            )
    largest, smallest = ns[-1], ns[0]
    lines += [
        "",
        f"| Step | p50 ms at N = {largest} | × from N = {smallest} (N: "
        f"×{largest / smallest:.1f}) | Exponents between neighbouring N: wall (CPU) "
        f"| < {TARGET_MS:.0f} ms at {largest} | No faster than linear |",
        "|---|---:|---:|---|---|---|",
    ]
    for kind, v in run.verdicts.items():
        pairs = zip(v["exponents"], v["cpu_exponents"], strict=True)
        growth = ", ".join(f"{wall:.2f} ({cpu:.2f})" for wall, cpu in pairs)
        lines.append(
            f"| {kind} | {v['ms_at_largest']:.1f} | ×{v['growth']:.2f} | {growth} "
            f"| {met(v['under_target'])} | {met(v['at_most_linear'])} |"
        )
    lines += [
        "",
        "An exponent is log(t₂ / t₁) / log(N₂ / N₁) of the p50 times: 0 = flat, 1 = linear, "
        "2 = quadratic. The verdict uses the wall times; where only they exceed 1 and the CPU "
        "times do not, other work on the machine is the likelier cause.",
    ]
    handed = ", ".join(f"N = {n}: {ms:.0f} ms" for n, ms in sorted(run.hand_out_ms.items()))
    lines += ["", f"`hand_out` per item (one transaction for all, not timed above): {handed}.", ""]
    if run.profiles:
        lines += [f"### Profiles ({run.name})", ""]
        for text in run.profiles.values():
            lines += [text, ""]
    return lines


def render(runs: list[DatabaseRun], args: argparse.Namespace, pg: str | None, load: str) -> str:
    ns = args.units
    lines = [
        "# Step cost against the number of implementing units",
        "",
        f"Items with 1 lead, {SUPPORT_UNITS} supporting and N implementing units (N = "
        f"{', '.join(map(str, ns))}), in a synthetic prefecture of {COUNTIES} counties, all in "
        f"one database per engine; per N one warm-up item (SQL counted) and {args.items} timed "
        "item(s), the Ns taken in turn. "
        "Each figure is one `complete_task` transaction, commit included (the step to complete "
        "is looked up beforehand, not timed). Verdicts on the p50 wall time. Code digest "
        f"(engine/ and process files) `{args.digest}`.",
        "",
    ]
    for run in runs:
        lines += render_database(run, ns)
    lines += machine_section(pg, load)
    return "\n".join(lines) + "\n"


def json_figures(runs: list[DatabaseRun], args: argparse.Namespace, load: str) -> dict[str, Any]:
    return {
        "units": args.units,
        "items": args.items,
        "target_ms": TARGET_MS,
        "code_digest": args.digest,
        "load": {"start": load, "end": load_average()},
        "databases": {
            r.name: {
                "kinds": {k: {str(n): f for n, f in by_n.items()} for k, by_n in r.kinds.items()},
                "verdicts": r.verdicts,
                "hand_out_ms": {str(n): v for n, v in r.hand_out_ms.items()},
                "profiled": sorted(r.profiles),
            }
            for r in runs
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--units", type=int, nargs="+", default=[10, 50, COUNTIES])
    parser.add_argument("--items", type=int, default=7, help="timed items per N (default 7)")
    parser.add_argument("--postgres", default=DEFAULT_PG, help="SQLAlchemy URL; '' to skip")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument(
        "--profile",
        choices=("auto", "all", "none"),
        default="auto",
        help="profile the steps that miss the goal (auto), every kind, or none",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/steps.md")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    args.units = sorted(set(args.units))
    if max(args.units) > COUNTIES or min(args.units) < 1 or len(args.units) < 2:
        parser.error(f"--units: two or more sizes between 1 and {COUNTIES}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    load = load_average()
    args.digest = code_digest(ROOT / "processes")
    runs = []
    pg = pg_reachable(args.postgres) if args.postgres else None
    if pg is not None:
        runs.append(measure_database("PostgreSQL", lambda: postgres_engine(args.postgres), args))
    if not args.no_sqlite:
        runs.append(measure_database("SQLite (file, WAL)", sqlite_engine, args))
    report = render(runs, args, pg, load)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    if args.json:
        figures = json_figures(runs, args, load)
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=1), encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
