"""Where one PostgreSQL step of `task_routing` spends its time: this process's CPU in
SpiffWorkflow's run, the state dump, new workflows and the client's fetch, the rest (duban's
own bookkeeping), and the wall time of each kind of round trip.

The loop is bench_engine's (`duban_item`: fetch the item's oldest open step, complete it in one
transaction) over --items items of 1 lead + 3 supporting + 10 implementing units, after one
warm-up item, in a fresh schema. The functions named below are wrapped for the run: CPU with
`time.process_time`, round trips with `time.perf_counter` around `engine.pgpipe.run` (one call
is one round trip), named by what they carry. Not counted: a COMMIT that psycopg sends on its
own, when a write's rowcount was still to be checked (engine.direct.send_waiting). The
wrappers cost a few microseconds a call; compare the parts, not the total, with bench_engine's
figures.

Usage: .venv/bin/python bench/step_split.py [--items N] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import bench_engine  # noqa: E402

from engine import pgpipe, runtime  # noqa: E402
from engine.db import make_engine, session_factory  # noqa: E402

# CPU of these, by name in the module that calls them.
CPU_PARTS = (
    (runtime, "_run", "SpiffWorkflow: run the step and the engine steps"),
    (runtime, "dump_state", "SpiffWorkflow: dump the state"),
    (runtime, "new_workflow", "SpiffWorkflow: new branch workflows"),
    (runtime, "_load_for_step", "load the workflow (or take it from the cache)"),
    (bench_engine, "next_step", "the client's fetch of its next step"),
)


class Tally:
    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def clear(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def add(self, key: str, seconds: float) -> None:
        self.seconds[key] += seconds
        self.calls[key] += 1


def timed(tally: Tally, key: str, clock: Callable[[], float], f: Callable[..., Any]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return f(*args, **kwargs)
        finally:
            tally.add(key, clock() - start)

    return wrapper


def round_trip_kind(statements: list[pgpipe.Statement]) -> str:
    sqls = [sql.lstrip().upper() for sql, _args, _control in statements]
    if any(sql.startswith("COMMIT") for sql in sqls):
        return "round trip with the COMMIT"
    if any("FOR UPDATE" in sql for sql in sqls):
        return "round trip that locks a row"
    return "other round trip (reads, the client's fetch)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--postgres", default=bench_engine.DEFAULT_PG)
    args = parser.parse_args(argv)

    cpu, wall = Tally(), Tally()
    for module, name, key in CPU_PARTS:
        setattr(module, name, timed(cpu, key, time.process_time, getattr(module, name)))
    send_and_wait = pgpipe.run

    def run(raw: Any, statements: list[pgpipe.Statement]) -> Any:
        start = time.perf_counter()
        try:
            return send_and_wait(raw, statements)
        finally:
            wall.add(round_trip_kind(statements), time.perf_counter() - start)

    pgpipe.run = run  # engine.direct calls it through the module

    with bench_engine.pg_schema(args.postgres) as schema:
        engine = make_engine(args.postgres, connect_args={"options": f"-csearch_path={schema}"})
        try:
            ids, _ = bench_engine.setup_database(engine, ROOT / "processes", args.items + 1)
            factory = session_factory(engine)
            data = bench_engine.form_data(date.today())
            bench_engine.duban_item(factory, ids[0], data, [])  # warm-up
            cpu.clear()
            wall.clear()
            steps, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
            for root_id in ids[1:]:
                latencies: list[float] = []
                bench_engine.duban_item(factory, root_id, data, latencies)
                steps += len(latencies)
            cpu_total = time.process_time() - cpu0
            wall_total = time.perf_counter() - wall0
        finally:
            engine.dispose()

    def ms(seconds: float) -> str:
        return f"{1000 * seconds / steps:6.3f} ms"

    print(f"{steps} steps of {args.items} items on PostgreSQL, per step:")
    print(f"  wall {ms(wall_total)}, this process's CPU {ms(cpu_total)}")
    for key, seconds in cpu.seconds.most_common():
        print(f"  CPU  {ms(seconds)}  {key} ({cpu.calls[key] / steps:.2f} calls)")
    print(f"  CPU  {ms(cpu_total - sum(cpu.seconds.values()))}  the rest: duban's own work")
    for key, seconds in wall.seconds.most_common():
        each = 1000 * seconds / wall.calls[key]
        share = wall.calls[key] / steps
        print(f"  wall {ms(seconds)}  {key} ({share:.2f} a step, {each:.3f} ms each)")


if __name__ == "__main__":
    main()
