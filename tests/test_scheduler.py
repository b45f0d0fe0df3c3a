"""The APScheduler wiring: the jobs run on their own in a background scheduler (as inside
`duban serve`), and `duban scheduler --once` runs each once."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import func, select

from duban.scheduler import Jobs, build
from engine.clock import FixedClock
from engine.models import CalendarRun


def test_the_background_scheduler_runs_the_jobs(seeded) -> None:  # type: ignore[no-untyped-def]
    jobs = Jobs(seeded, clock=FixedClock(datetime(2026, 11, 20, 2, 0, tzinfo=UTC)), channels={})
    scheduler = build(jobs, blocking=False)
    scheduler.start()
    assert {job.id for job in scheduler.get_jobs()} == {"calendar", "branches", "sweep", "deliver"}
    try:
        deadline = time.monotonic() + 20
        runs = 0
        while time.monotonic() < deadline and runs < 3:
            time.sleep(0.1)
            with seeded() as s:
                runs = s.scalar(select(func.count()).select_from(CalendarRun)) or 0
    finally:
        scheduler.shutdown(wait=True)
    assert runs == 3  # both yearly collections and Weixi's late-meeting warning
