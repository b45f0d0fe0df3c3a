"""The record under concurrent use: fifty clients on one step, ten implementing units
reporting on one item at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import func, select

from engine.errors import Conflict
from engine.models import HistoryEntry, HumanTask, Instance, TaskState
from engine.routing import hand_out
from tests.helpers import act, completed_count, open_steps

CLIENTS = 50


def _all_at_once(count: int, action: Callable[[int], None]) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            action(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_fifty_clients_complete_the_same_step_and_exactly_one_wins(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
        item_id = item.id
    with seeded() as s:
        step = open_steps(s, item_id)[0]
    errors = _all_at_once(CLIENTS, lambda _n: act(seeded, step, clock))
    assert len(errors) == CLIENTS - 1 and all(isinstance(e, Conflict) for e in errors)
    assert all("already completed" in str(e) or "no longer ready" in str(e) for e in errors)
    with seeded() as s:
        assert completed_count(s) == 1
        assert s.get(HumanTask, step.id).state == TaskState.COMPLETED


def test_ten_implementing_units_report_at_once_and_the_item_moves_on_once(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [2], clock())  # lead, co-lead, ten townships
        item_id = item.id
    for element in ("acknowledge", "set_plan"):
        with seeded() as s:
            steps = [t for t in open_steps(s, item_id) if t.element_id == element]
        for step in steps:
            act(seeded, step, clock)
    with seeded() as s:
        reports = [t for t in open_steps(s, item_id) if t.element_id == "report_progress"]
        others = [t for t in open_steps(s, item_id) if t.element_id != "report_progress"]
    assert len(reports) == 10
    for step in others:  # the co-lead's contribution, so the reports are the last branch
        act(seeded, step, clock)
    with seeded() as s:
        before = s.get(Instance, item_id).revision
    errors = _all_at_once(len(reports), lambda n: act(seeded, reports[n], clock))
    assert errors == []
    with seeded() as s:
        kept = s.scalar(
            select(func.count())
            .select_from(HistoryEntry)
            .where(
                HistoryEntry.action == "completed",
                HistoryEntry.human_task_id.in_([r.id for r in reports]),
            )
        )
        assert kept == 10  # every report kept, none twice
        # The item moved on once, to the lead's consolidation, when the last report landed.
        assert s.get(Instance, item_id).revision == before + 1
        assert [t.element_id for t in open_steps(s, item_id)] == ["consolidate"]
