"""How long a timer sweep takes, by how many timed steps are open and how many are due.

For each --open size (default 10,000 and 1,000,000), in a fresh PostgreSQL schema: the real
directory and processes (`duban seed`), then `--due` max real acknowledgement steps started
through the engine (each with its four due-date timers, engine.timing), and filler waiting
timers copied in (COPY) up to the open size, due far in the future. Then for each due count
(default 0, 100, 10,000) the sweep (`engine.escalation.sweep`) runs at an instant when exactly
that many steps have their reminder due, and is timed end to end (finding, firing, history,
notices; one transaction per instance).

Usage: .venv/bin/python bench/bench_sweep.py [--postgres URL] [--open N ...] [--due N ...]
       [--out FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

from machine import load_average, machine_lines  # bench/machine.py (run as a script)
from sqlalchemy import Engine, func, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from duban.cli import seed  # noqa: E402
from engine.db import make_engine, scratch_schema, session_factory, upgrade  # noqa: E402
from engine.directory import find_unit  # noqa: E402
from engine.escalation import sweep  # noqa: E402
from engine.models import Instance, Timer, TimerKind, TimerState  # noqa: E402
from engine.runtime import start_instance  # noqa: E402
from engine.specs import SPEC_CACHE  # noqa: E402

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
FAR = datetime(2099, 1, 1, tzinfo=UTC)
COPY_BATCH = 100_000
IDLE_RUNS = 21  # sweeps timed when nothing is due (the median is reported)


@contextmanager
def pg_schema(url: str) -> Iterator[Engine]:
    with scratch_schema(url, f"bench_sweep_{uuid.uuid4().hex[:8]}") as schema:
        engine = make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
        try:
            yield engine
        finally:
            engine.dispose()


def start_steps(engine: Engine, count: int) -> datetime:
    """`count` acknowledgement steps due in ten days (one instance each); returns the due."""
    factory = session_factory(engine)
    with factory.begin() as s:
        unit = find_unit(s, "县农业农村局", "weixi")
        jurisdiction_id = unit.jurisdiction_id
        unit_id = unit.id
    due_day = (START + timedelta(days=10)).date().isoformat()
    for first in range(0, count, 500):
        with factory.begin() as s:
            for n in range(first, min(first + 500, count)):
                data = {"unit": unit_id, "role": "lead", "due": due_day}
                start_instance(
                    s,
                    "unit_acknowledgement",
                    data,
                    f"bench-{n}",
                    START,
                    jurisdiction_id=jurisdiction_id,
                )
    with factory() as s:
        reminder = s.scalar(select(func.min(Timer.fire_at)).where(Timer.kind == TimerKind.REMINDER))
    assert reminder is not None
    return reminder


def filler(engine: Engine, count: int) -> None:
    """Waiting timers due far ahead, each on a minimal instance row, copied in."""
    if count <= 0:
        return
    with engine.begin() as conn:
        version_id = conn.scalar(text("SELECT min(id) FROM process_version"))
        first = (conn.scalar(text("SELECT coalesce(max(id), 0) FROM instance")) or 0) + 1
    raw = engine.raw_connection()
    try:
        for lo in range(0, count, COPY_BATCH):
            hi = min(lo + COPY_BATCH, count)
            with raw.driver_connection.cursor() as cur:
                with cur.copy(
                    "COPY instance (id, process_version_id, process_id, business_key, status, "
                    "state, serializer_version, revision, created_at, updated_at, has_children) "
                    "FROM STDIN"
                ) as copy:
                    for n in range(lo, hi):
                        copy.write_row(
                            (
                                first + n,
                                version_id,
                                "unit_acknowledgement",
                                f"fill-{n}",
                                "running",
                                b"",
                                1,
                                1,
                                START,
                                START,
                                False,
                            )
                        )
                with cur.copy(
                    "COPY timer (instance_id, spiff_task_id, element_id, host_element_id, kind, "
                    "fire_at, state, fired) FROM STDIN"
                ) as copy:
                    for n in range(lo, hi):
                        copy.write_row(
                            (
                                first + n,
                                uuid.uuid4().hex[:36],
                                "acknowledge_reminder",
                                "acknowledge",
                                "reminder",
                                FAR,
                                "waiting",
                                0,
                            )
                        )
            raw.commit()
        with raw.cursor() as cur:
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('instance', 'id'), max(id)) FROM instance"
            )
            cur.execute("ANALYZE timer")
            cur.execute("ANALYZE instance")
        raw.commit()
    finally:
        raw.close()


def measure(url: str, open_size: int, dues: list[int]) -> list[tuple[int, int, float, int]]:
    rows = []
    SPEC_CACHE.clear()
    with pg_schema(url) as engine:
        upgrade(engine)
        with session_factory(engine).begin() as s:
            seed(s)
        real = max(dues)
        print(f"  {open_size:,} open: starting {real:,} real steps ...", file=sys.stderr)
        reminder = start_steps(engine, real)
        with engine.connect() as conn:
            have = conn.scalar(text("SELECT count(*) FROM timer WHERE state = 'waiting'")) or 0
        print(f"  copying {max(open_size - have, 0):,} filler timers ...", file=sys.stderr)
        filler(engine, open_size - have)
        factory = session_factory(engine)
        with factory() as s:
            waiting = s.scalar(
                select(func.count()).select_from(Timer).where(Timer.state == TimerState.WAITING)
            )
        # Each real step's reminder fires at the same instant; take `due` of them by making the
        # others' reminders later.
        for due in sorted(dues):
            with engine.begin() as conn:
                ids = [
                    r[0]
                    for r in conn.execute(
                        text(
                            "SELECT id FROM timer WHERE kind = 'reminder' AND state = 'waiting' "
                            "AND fire_at < :far ORDER BY id"
                        ),
                        {"far": FAR},
                    )
                ]
                later = ids[due:]
                if later:
                    conn.execute(
                        text("UPDATE timer SET fire_at = :later WHERE id = ANY(:ids)"),
                        {"later": reminder + timedelta(days=365), "ids": later},
                    )
            # A sweep with nothing due takes milliseconds, so one run is mostly noise on a
            # shared machine: it is repeated (it changes nothing) and the median kept.
            times = []
            for _ in range(IDLE_RUNS if due == 0 else 1):
                t0 = time.perf_counter()
                result = sweep(factory, reminder + timedelta(minutes=1))
                times.append(time.perf_counter() - t0)
            seconds = statistics.median(times)
            rows.append((int(waiting or 0), due, seconds, result.instances))
            print(f"  {open_size:,} open, {due:,} due: {seconds:.3f} s", file=sys.stderr)
            with engine.begin() as conn:  # the next round's steps are due again
                conn.execute(
                    text("UPDATE timer SET fire_at = :at WHERE id = ANY(:ids)"),
                    {"at": reminder, "ids": later},
                )
        with factory() as s:
            s.scalar(select(func.count()).select_from(Instance))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--open", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--due", type=int, nargs="+", default=[0, 100, 10_000])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sweep.md")
    parser.add_argument(
        "--json", type=Path, help="also write the figures as JSON here (bench/report.py reads it)"
    )
    args = parser.parse_args()
    load_at_start = load_average()
    lines = [
        "# Timer sweep",
        "",
        "One sweep (`engine.escalation.sweep`) at an instant when the given number of open",
        "steps have a due timer; the rest wait far ahead. Wall time for the whole sweep",
        "(find, fire in SpiffWorkflow, history, notices; one transaction per instance); with",
        f"nothing due, the median of {IDLE_RUNS} sweeps.",
        "",
        "| Waiting timers | Due | Sweep seconds | ms per firing |",
        "|---:|---:|---:|---:|",
    ]
    figures = []
    for size in args.open:
        for waiting, due, seconds, instances in measure(args.postgres, size, args.due):
            per = f"{1000 * seconds / instances:.1f}" if instances else "–"
            lines.append(f"| {waiting:,} | {due:,} | {seconds:.3f} | {per} |")
            figures.append(
                {
                    "open": size,
                    "waiting": waiting,
                    "due": due,
                    "seconds": seconds,
                    "instances_fired": instances,
                }
            )
    with make_engine(args.postgres).connect() as conn:
        server = conn.scalar(text("SHOW server_version"))
    lines += ["", *machine_lines(f"SQLAlchemy {version('sqlalchemy')}, PostgreSQL {server}", [])]
    report = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    if args.json:
        load = {"start": load_at_start, "end": load_average()}
        doc = {"rows": figures, "postgres": server, "load": load}
        args.json.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
