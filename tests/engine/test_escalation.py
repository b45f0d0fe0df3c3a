"""Due-date timers end to end: the BPMN boundary timers of each step fire through the sweep as
the clock moves (reminder, overdue, 催办, escalation), once each, to the right people; the
rules are settings; completing a step ends its timers; two sweeps at once and a sweep killed
mid-way fire nothing twice; the yearly calendar rules start by themselves, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from engine.calendar_rules import run_calendar
from engine.clock import FixedClock
from engine.directory import find_unit, hand_over, position_of
from engine.escalation import sweep
from engine.models import (
    CalendarRun,
    HistoryEntry,
    HumanTask,
    JurisdictionSetting,
    Notification,
    Person,
    Plan,
    TaskState,
    Timer,
    TimerKind,
    TimerState,
)
from engine.routing import hand_out
from tests.conftest import ROOT
from tests.helpers import act, until_review


def _person(s: Session, name: str, unit: str, kind: str, at: datetime) -> int:
    person = Person(name=name)
    s.add(person)
    s.flush()
    hand_over(s, position_of(s, find_unit(s, unit, "weixi"), kind), person, at)
    return person.id


def _ack(s: Session, unit: str) -> HumanTask:
    unit_id = find_unit(s, unit, "weixi").id
    return s.scalars(
        select(HumanTask).where(
            HumanTask.element_id == "acknowledge",
            HumanTask.unit_id == unit_id,
            HumanTask.state == TaskState.READY,
        )
    ).one()


def _actions(s: Session, task_id: int) -> list[str]:
    return list(
        s.scalars(
            select(HistoryEntry.action)
            .where(HistoryEntry.human_task_id == task_id, HistoryEntry.action != "completed")
            .order_by(HistoryEntry.id)
        )
    )


def _events(s: Session, person_id: int) -> list[str]:
    return list(
        s.scalars(
            select(Notification.event)
            .where(Notification.person_id == person_id)
            .order_by(Notification.id)
        )
    )


def test_reminder_overdue_urge_and_escalation_fire_once_each(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        liaison = _person(s, "农业联络员", "县农业农村局", "liaison", clock())
        head = _person(s, "农业局长", "县农业农村局", "head", clock())
        hand_out(s, "weixi-2023-15", [7], clock())
    with seeded() as s:
        step = _ack(s, "县农业农村局")
        timers = s.scalars(
            select(Timer).where(
                Timer.host_element_id == "acknowledge", Timer.instance_id == step.instance_id
            )
        ).all()
        assert sorted(t.kind for t in timers) == sorted(TimerKind)
        due = step.due_at
        assert {t.kind: t.fire_at for t in timers}[TimerKind.OVERDUE] == due
        assert _events(s, liaison) == ["task_assigned"]
    # Nothing is due yet; then the reminder three days ahead, the overdue at the due time,
    # 催办 every two days after, the escalation after five days' grace.
    assert sweep(seeded, clock()).fired == 0
    moments = [
        (due - timedelta(days=3) + timedelta(minutes=1), ["reminded"]),
        (due + timedelta(minutes=1), ["reminded", "overdue"]),
        (due + timedelta(days=2, minutes=1), ["reminded", "overdue", "urged"]),
        (due + timedelta(days=4, minutes=1), ["reminded", "overdue", "urged", "urged"]),
        (
            due + timedelta(days=5, minutes=1),
            ["reminded", "overdue", "urged", "urged", "escalated"],
        ),
    ]
    for at, expected in moments:
        sweep(seeded, at)
        sweep(seeded, at)  # a second sweep at the same moment finds nothing more
        with seeded() as s:
            assert _actions(s, step.id) == expected, at
    with seeded() as s:
        assert _events(s, liaison) == ["task_assigned", "due_soon", "overdue", "urged", "urged"]
        assert _events(s, head) == ["escalated"]
        zhang = s.scalar(select(Person.id).where(Person.name == "张键伟"))
        assert "escalated" in _events(s, zhang)
    # Done at last: its timers end with it.
    act(seeded, step, FixedClock(due + timedelta(days=6)))
    with seeded() as s:
        waiting = s.scalars(
            select(Timer).where(
                Timer.instance_id == step.instance_id, Timer.state == TimerState.WAITING
            )
        ).all()
        assert waiting == []
    sweep(seeded, due + timedelta(days=30))  # the other units' steps are still open
    with seeded() as s:
        assert _actions(s, step.id) == moments[-1][1]


def test_the_rules_are_settings(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        weixi = find_unit(s, "县农业农村局", "weixi").jurisdiction_id
        s.add(JurisdictionSetting(jurisdiction_id=weixi, key="escalation.reminder_days", value="1"))
        s.add(
            JurisdictionSetting(
                jurisdiction_id=weixi, key="escalation.unit_acknowledgement.grace_days", value="10"
            )
        )
        hand_out(s, "weixi-2023-15", [7], clock())
    with seeded() as s:
        step = _ack(s, "县农业农村局")
        fire = {
            t.kind: t.fire_at
            for t in s.scalars(select(Timer).where(Timer.instance_id == step.instance_id))
        }
        assert fire[TimerKind.REMINDER] == step.due_at - timedelta(days=1)
        assert fire[TimerKind.ESCALATE] == step.due_at + timedelta(days=10)


def _many_due(seeded: sessionmaker[Session], clock: FixedClock) -> datetime:
    with seeded.begin() as s:
        hand_out(s, "weixi-2023-15", list(range(1, 11)), clock())
    with seeded() as s:
        return s.scalar(select(func.min(Timer.fire_at)).where(Timer.kind == TimerKind.OVERDUE))


def _fired_once(seeded: sessionmaker[Session]) -> Counter[tuple[int, str]]:
    with seeded() as s:
        rows = s.execute(
            select(HistoryEntry.human_task_id, HistoryEntry.action).where(
                HistoryEntry.action.in_(("reminded", "overdue"))
            )
        ).all()
    return Counter((task_id, action) for task_id, action in rows)


def test_two_schedulers_fire_each_timer_once(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    at = _many_due(seeded, clock) + timedelta(minutes=1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sweep(seeded, at)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]  # two schedulers, and one more
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    counts = _fired_once(seeded)
    with seeded() as s:
        open_steps = s.scalar(
            select(func.count()).select_from(HumanTask).where(HumanTask.state == TaskState.READY)
        )
    assert len(counts) == 2 * open_steps and set(counts.values()) == {1}


def _subprocess_url(seeded: sessionmaker[Session]) -> str:
    engine = seeded.kw["bind"]
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar()
        url += f"?options=-csearch_path%3D{schema}"
    return url


def test_a_scheduler_killed_mid_sweep_loses_nothing_and_repeats_nothing(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    at = _many_due(seeded, clock) + timedelta(minutes=1)
    script = (
        "import sys\n"
        "from datetime import datetime\n"
        "from engine.db import make_engine, session_factory\n"
        "from engine.escalation import sweep\n"
        "sweep(session_factory(make_engine(sys.argv[1])), datetime.fromisoformat(sys.argv[2]))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script, _subprocess_url(seeded), at.isoformat()],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while not _fired_once(seeded) and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)  # whatever it was doing, mid-transaction or not
    worker.wait()
    partial = sum(_fired_once(seeded).values())
    sweep(seeded, at)  # the restarted scheduler
    counts = _fired_once(seeded)
    with seeded() as s:
        open_steps = s.scalar(
            select(func.count()).select_from(HumanTask).where(HumanTask.state == TaskState.READY)
        )
    assert len(counts) == 2 * open_steps and set(counts.values()) == {1}
    assert partial <= sum(counts.values())


def test_the_yearly_collection_starts_once_in_its_window(seeded) -> None:  # type: ignore[no-untyped-def]
    early = datetime(2026, 10, 20, 2, 0, tzinfo=UTC)  # Weixi's window opens 31 October
    with seeded.begin() as s:
        assert run_calendar(s, early) == []
    in_window = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)
    with seeded.begin() as s:
        assert run_calendar(s, in_window) == ["report:weixi:2026"]
    with seeded.begin() as s:
        assert run_calendar(s, in_window + timedelta(days=1)) == []
        plan = s.scalars(select(Plan).where(Plan.key == "annual-report-weixi-2026")).one()
        (task,) = plan.tasks
        implementers = [u.unit.name for u in task.units if u.role.value == "implement"]
        assert len(implementers) == 10 and task.due_on.isoformat() == "2026-11-30"
        assert [u.unit.name for u in task.units if u.role.value == "lead"] == ["县卫生健康局"]
    # Dehong's window (10 December, 30 days) opens 10 November; Weixi's yearly meeting is late.
    with seeded.begin() as s:
        done = run_calendar(s, datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    assert sorted(done) == ["meeting-warning:weixi:2026", "report:dehong:2026"]
    with seeded() as s:
        zhang = s.scalar(select(Person.id).where(Person.name == "张键伟"))
        convener = s.scalar(select(Person.id).where(Person.name == "李春梅"))
        assert _events(s, zhang).count("yearly_meeting_due") == 1
        assert _events(s, convener) == ["yearly_meeting_due"]
        assert s.scalar(select(func.count()).select_from(CalendarRun)) == 3


def test_sent_back_and_extension_decisions_are_told(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        lead = _person(s, "发改联络员", "县发展和改革局", "liaison", clock())
        (item,) = hand_out(s, "weixi-2023-15", [9], clock())
        item_id = item.id
    act(
        seeded, until_review(seeded, clock, item_id), clock, decision="send_back", reason="数据不全"
    )
    with seeded() as s:
        assert _events(s, lead)[-2:] == ["task_assigned", "sent_back"]
        notice = s.scalars(select(Notification).where(Notification.event == "sent_back")).one()
        assert notice.context["reason"] == "数据不全"
