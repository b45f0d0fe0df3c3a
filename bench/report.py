"""Every performance figure of the project in one run, in one report.

Runs bench_engine.py, bench_web.py, bench_sweep.py and bench_steps.py one after the other, each
in its own process writing its Markdown and JSON into bench/results/, then writes
bench/results/report.md — every figure with its target and whether it is met, the machine, the
date, the commit and whether the tree was dirty — and bench/results/report.json (the run and the
raw figures of every part). `--quick` runs smaller sizes, for development; the report says so.

Usage: .venv/bin/python bench/report.py [--quick] [--parts NAME ...] [--postgres URL]
       [--note TEXT] [--render-only]
See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench_engine import code_digest, pg_reachable  # bench/ (run as a script)
from machine import load_average, machine_busy, machine_lines
from report_rows import Row, rows_for

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Part:
    name: str
    script: str
    title: str
    quick: tuple[str, ...]  # arguments of a quick run; a full run uses each script's defaults


PARTS = (
    Part(
        "engine",
        "bench_engine.py",
        "one human step: raw SpiffWorkflow against duban on SQLite and PostgreSQL",
        ("--instances", "3", "--no-profile"),
    ),
    Part(
        "web",
        "bench_web.py",
        "the inbox and the dashboard at scale; the JSON API under gunicorn",
        (
            *("--instances", "5000", "--query-runs", "30", "--page-runs", "20"),
            *("--budget", "10", "--seconds", "10", "--warmup", "3", "--rounds", "1"),
            *("--profile-loops", "20"),
        ),
    ),
    Part(
        "sweep",
        "bench_sweep.py",
        "the timer sweep by open and due steps",
        ("--open", "2000", "20000", "--due", "0", "10", "100"),
    ),
    Part(
        "steps",
        "bench_steps.py",
        "step cost against the number of implementing units",
        ("--items", "2"),
    ),
)


# --- the run ---------------------------------------------------------------------------------


def git(*command: str) -> str:
    done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
    # Only trailing newlines go: porcelain lines begin with a meaningful space.
    return done.stdout.rstrip("\n") if done.returncode == 0 else "unknown"


def tree_state() -> dict[str, Any]:
    """The commit, and the tracked files changed against it (others may be editing)."""
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return {
        "commit": git("rev-parse", "--short=12", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "dirty": [line[3:] for line in changed],
        "code_digest": code_digest(ROOT / "processes"),
    }


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_part(part: Part, args: argparse.Namespace) -> dict[str, Any]:
    """One benchmark in its own process; its stdout (the report again) goes to a log file."""
    command = [
        sys.executable,
        str(BENCH / part.script),
        *(part.quick if args.quick else ()),
        *("--postgres", args.postgres),
        *("--out", str(RESULTS / f"{part.name}.md")),
        *("--json", str(RESULTS / f"{part.name}.json")),
    ]
    print(f"== {part.name}: {part.title}", file=sys.stderr)
    started, load_before = datetime.now(UTC), load_average()
    busy0, total0 = machine_busy()
    cpu0, t0 = children_cpu(), time.perf_counter()
    with (RESULTS / f"{part.name}.log").open("w") as log:
        code = subprocess.run(command, cwd=ROOT, stdout=log).returncode
    busy1, total1 = machine_busy()
    figures_path = RESULTS / f"{part.name}.json"
    return {
        "command": " ".join(["python", *command[1:]]).replace(str(ROOT) + "/", ""),
        "started": started.isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - t0,
        "exit": code,
        "load": {"before": load_before, "after": load_average()},
        # Shares of the whole machine's CPU over the part: everything, and the benchmark's own
        # process tree (gunicorn included; the PostgreSQL server is neither ours nor counted).
        "machine_busy": (busy1 - busy0) / max(total1 - total0, 1e-9),
        "bench_cpu": (children_cpu() - cpu0) / max(total1 - total0, 1e-9),
        "figures": json.loads(figures_path.read_text()) if code == 0 else None,
    }


def software() -> str:
    names = ("SpiffWorkflow", "SQLAlchemy", "Flask", "psycopg", "gunicorn", "APScheduler")
    return ", ".join(f"{name} {version(name)}" for name in names)


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    pg = pg_reachable(args.postgres)
    doc: dict[str, Any] = {
        "quick": args.quick,
        "note": args.note,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_at_start": load_average(),
        "tree": tree_state(),
        "machine": machine_lines(software(), [f"- PostgreSQL server {pg or 'unreachable'}"]),
        "parts": {},
    }
    for part in PARTS:
        if part.name in args.parts:
            doc["parts"][part.name] = run_part(part, args)
            save(doc)  # a long run keeps what it has measured if a later part fails
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    doc["tree_at_end"] = tree_state()
    return doc


def save(doc: dict[str, Any]) -> None:
    (RESULTS / "report.json").write_text(json.dumps(doc, ensure_ascii=False, indent=1))


# --- the report ------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "no target set" if ok is None else "met" if ok else "**not met**"


def summary(rows: list[Row]) -> list[str]:
    lines = [
        "| Figure | Measured on | Result | Target | |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.figure} | {r.size} | {r.measured} | {r.target} | {verdict(r.met)} |" for r in rows
    ]
    return lines


def run_table(doc: dict[str, Any]) -> list[str]:
    lines = [
        "| Part | Command | Started (UTC) | Minutes | Load before → after | Machine CPU busy "
        "| Benchmark's own processes | Exit |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for name, p in doc["parts"].items():
        lines.append(
            f"| {name} | `{p['command']}` | {p['started'][11:16]} | {p['seconds'] / 60:.1f} "
            f"| {p['load']['before']} → {p['load']['after']} | {100 * p['machine_busy']:.0f}% "
            f"| {100 * p['bench_cpu']:.0f}% | {p['exit']} |"
        )
    return lines


def tree_lines(doc: dict[str, Any]) -> list[str]:
    start, end = doc["tree"], doc.get("tree_at_end", doc["tree"])
    dirty = start["dirty"]
    lines = [
        f"- Commit `{start['commit']}` ({start['subject']}); tree "
        + (
            f"**dirty**: {len(dirty)} tracked file(s) changed ({', '.join(dirty[:8])})"
            if dirty
            else "clean (tracked files)"
        ),
        f"- Code digest (engine/ and process files) `{start['code_digest']}` at start, "
        f"`{end['code_digest']}` at end"
        + (
            ""
            if start["code_digest"] == end["code_digest"]
            else " — **the code changed during the run**: parts measured different code"
        ),
    ]
    return lines


def render(doc: dict[str, Any]) -> str:
    rows = [row for name, part in doc["parts"].items() for row in rows_for(name, part)]
    lines = ["# duban performance report", ""]
    if doc["quick"]:
        lines += [
            "> **Quick run (`--quick`)**: smaller sizes than issue 8 asks for, to check that "
            "the benchmarks work. These are not the project's figures; the *Measured on* column "
            "says what was measured.",
            "",
        ]
    if doc.get("note"):
        lines += [f"> Note: {doc['note']}", ""]
    lines += [
        f"Run {doc['started'].replace('T', ' ')} → {doc.get('finished', '?').replace('T', ' ')} "
        f"UTC; load average at start {doc['load_at_start']}.",
        "",
        *tree_lines(doc),
        "",
        *summary(rows),
        "",
        "Verdicts follow the targets of issues 2, 3, 6, 7 and 8. Each part's own report, with "
        "how it is measured, notes and profiles, is beside this one in `bench/results/` "
        "(`engine.md`, `web.md`, `sweep.md`, `steps.md`); the raw figures are in "
        "`report.json`.",
        "",
        "## The run",
        "",
        *run_table(doc),
        "",
        "Machine CPU busy is the share of all cores in use over the part; the benchmark's own "
        "processes are the script and its children (gunicorn included). The rest is the "
        "PostgreSQL server and whatever else ran on the machine: when it is large, or the load "
        "average is near the core count before a part, other work competed with that part and "
        "its wall-clock figures are inflated.",
        "",
        *doc["machine"],
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for development")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=[p.name for p in PARTS],
        default=[p.name for p in PARTS],
        help="run only these parts (the report then has only their figures)",
    )
    parser.add_argument("--postgres", default=DEFAULT_PG, help="SQLAlchemy URL (psycopg)")
    parser.add_argument("--note", default="", help="a line for the report's header")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="write report.md again from bench/results/report.json, running nothing",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        doc = json.loads((RESULTS / "report.json").read_text())
        doc["note"] = args.note or doc.get("note", "")
    else:
        doc = run_all(args)
    save(doc)
    report = render(doc)
    (RESULTS / "report.md").write_text(report, encoding="utf-8")
    print(report)
    failed = [name for name, p in doc["parts"].items() if p["exit"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)} (see bench/results/<part>.log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
