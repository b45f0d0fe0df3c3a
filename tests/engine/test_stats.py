"""The dashboard's statistics on a constructed world with known answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.clock import FixedClock
from engine.directory import find_unit, jurisdiction
from engine.models import HumanTask, TaskState
from engine.routing import hand_out
from engine.stats import Filters, dashboard, drill, sort_units
from tests.helpers import act, open_steps, until_review


def test_counts_by_list_and_unit_with_known_answers(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [4], clock())
        item_id = item.id
        weixi = jurisdiction(s, "weixi").id
        units = {
            name: find_unit(s, name, "weixi").id for name in ("县公安局", "县民政局", "县财政局")
        }
    with seeded() as s:
        acks = {t.unit_id: t for t in open_steps(s, item_id)}
    n = len(acks)
    due = next(iter(acks.values())).due_at
    assert n > 3 and all(t.due_at == due for t in acks.values())
    # Two units acknowledge at once (on time); one two days late; the rest stay open.
    act(seeded, acks[units["县公安局"]], clock)
    act(seeded, acks[units["县民政局"]], clock)
    late = FixedClock(due + timedelta(days=2))
    act(seeded, acks[units["县财政局"]], late)
    now = due + timedelta(days=2)
    with seeded() as s:
        board = dashboard(s, Filters(jurisdiction_ids=(weixi,)), now)
    ((plan, totals),) = board.lists
    assert plan.key == "weixi-2023-15"
    assert (totals.open, totals.overdue, totals.due_soon, totals.green) == (n - 3, n - 3, 0, 0)
    assert (totals.completed, totals.on_time, totals.late) == (3, 2, n - 2)
    assert totals.on_time_rate == pytest.approx(2 / 3)
    assert totals.average_days_overdue == pytest.approx(2.0)
    rows = {r.unit_id: r for r in board.units}
    agri, finance = rows[units["县公安局"]].total, rows[units["县财政局"]].total
    assert (agri.completed, agri.on_time, agri.open, agri.overdue) == (1, 1, 0, 0)
    assert (finance.completed, finance.on_time, finance.late) == (1, 0, 1)
    assert finance.average_days_overdue == pytest.approx(2.0)
    lead = [r for r in board.units if "lead" in r.by_role]
    assert len(lead) >= 1 and all(
        r.by_role["lead"].open + r.by_role["lead"].completed == 1 for r in lead
    )
    assert sort_units(board.units, "overdue")[0].total.overdue == 1
    # Due soon: a day before the due time every open step is yellow.
    with seeded() as s:
        early = dashboard(s, Filters(jurisdiction_ids=(weixi,)), due - timedelta(days=1))
        assert early.totals.due_soon == n - 3 and early.totals.overdue == 0
        behind = drill(s, Filters(jurisdiction_ids=(weixi,), status="overdue"), now)
        assert len(behind) == n - 3 and all(t.state == TaskState.READY for t, _ in behind)
        one_unit = dashboard(s, Filters(jurisdiction_ids=(weixi,), unit_id=units["县财政局"]), now)
        assert [r.unit_id for r in one_unit.units] == [units["县财政局"]]
        assert sum(c for _, c in one_unit.completions_by_week) == 1
        other = dashboard(s, Filters(jurisdiction_ids=(jurisdiction(s, "dehong").id,)), now)
        assert other.units == [] and other.totals.open == 0
        assert s.scalar(select(HumanTask.id).limit(1)) is not None


def test_tallies_rebuilt_from_the_steps_match_the_running_counts(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    from engine.models import StepTally
    from engine.stats import rebuild_tallies

    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [9], clock())
        item_id = item.id
    late = FixedClock(clock() + timedelta(days=40))
    act(
        seeded,
        until_review(seeded, clock, item_id, late),
        clock,
        decision="send_back",
        reason="补充数据",
    )

    def snapshot() -> set[tuple]:
        with seeded() as s:
            return {
                (
                    t.plan_id,
                    t.unit_id,
                    t.role,
                    t.day,
                    t.completed,
                    t.on_time,
                    t.late,
                    round(t.late_days, 3),
                    t.sent_back,
                )
                for t in s.scalars(select(StepTally))
            }

    running = snapshot()
    assert sum(r[8] for r in running) == 1  # one send-back, against the lead unit
    assert all(r[2] == "lead" for r in running if r[8])
    with seeded.begin() as s:
        rebuild_tallies(s.connection())
    assert snapshot() == running
