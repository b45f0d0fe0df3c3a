"""The scheduler (APScheduler 3): starts branches left to start after their step, sweeps due
timers, sends the outbox, runs the calendar rules.
In the embedded default it runs inside `duban serve`; in production it is its own process,
`duban scheduler`. Every job is a loop of short transactions that are safe to repeat, so two
schedulers on one PostgreSQL database, or one killed and restarted, fire everything once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session, sessionmaker

from engine.calendar_rules import run_calendar
from engine.clock import utcnow
from engine.escalation import sweep
from engine.runtime import start_deferred
from notifications.channels import Channel, default_channels
from notifications.outbox import deliver

log = logging.getLogger("duban.scheduler")
SWEEP_SECONDS, DELIVER_SECONDS, CALENDAR_HOURS = 30, 15, 6
BRANCH_SECONDS = 2  # a wide fan-out's branches wait at most this long to start


@dataclass
class Jobs:
    factory: sessionmaker[Session]
    clock: Callable[[], datetime] = utcnow
    channels: dict[str, Channel] = field(default_factory=default_channels)
    base_url: str = ""

    def branches(self) -> None:
        started = start_deferred(self.factory, self.clock())
        if started:
            log.info("branches: %d started", started)

    def sweep(self) -> None:
        result = sweep(self.factory, self.clock())
        if result.fired:
            log.info("timers: %d instance(s), %d notice(s)", result.instances, result.fired)

    def deliver(self) -> None:
        result = deliver(self.factory, self.channels, self.clock(), base_url=self.base_url)
        if result.sent or result.failed:
            log.info("outbox: %d sent, %d to retry", result.sent, result.failed)

    def calendar(self) -> None:
        with self.factory.begin() as session:
            done = run_calendar(session, self.clock())
        for key in done:
            log.info("calendar: %s", key)

    def once(self) -> None:
        """Every job once, in order (cron-style use, and tests)."""
        self.calendar()
        self.branches()
        self.sweep()
        self.deliver()


def build(jobs: Jobs, blocking: bool) -> BaseScheduler:
    scheduler: BaseScheduler = (
        BlockingScheduler(timezone=UTC) if blocking else BackgroundScheduler(timezone=UTC)
    )
    first = datetime.now(UTC)
    # coalesce + one instance: a slow run is never doubled, missed runs collapse into one.
    options = {"coalesce": True, "max_instances": 1, "next_run_time": first}
    scheduler.add_job(jobs.calendar, "interval", hours=CALENDAR_HOURS, id="calendar", **options)
    scheduler.add_job(jobs.branches, "interval", seconds=BRANCH_SECONDS, id="branches", **options)
    scheduler.add_job(jobs.sweep, "interval", seconds=SWEEP_SECONDS, id="sweep", **options)
    scheduler.add_job(jobs.deliver, "interval", seconds=DELIVER_SECONDS, id="deliver", **options)
    return scheduler
