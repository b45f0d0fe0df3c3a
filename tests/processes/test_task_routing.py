"""Path tests for processes/task_routing.bpmn, driven through the engine as the units would."""

from collections import defaultdict
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.directory import find_unit, position_of
from engine.errors import PermissionDenied
from engine.models import (
    HistoryEntry,
    HumanTask,
    Instance,
    InstanceStatus,
    PlanTask,
    Role,
    TaskState,
)
from engine.routing import hand_out
from engine.runtime import Actor, complete_task
from tests.helpers import act, answer, drive, open_steps


def _start(seeded, clock, plan, number):
    with seeded.begin() as s:
        (instance,) = hand_out(s, plan, [number], clock())
    return instance.id


def _steps(seeded, instance_id, element=None):
    with seeded() as s:
        steps = open_steps(s, instance_id)
        for step in steps:
            _ = step.unit.name, step.position.kind
    return [t for t in steps if element is None or t.element_id == element]


def _complete_all(seeded, clock, instance_id, element, **override):
    steps = _steps(seeded, instance_id, element)
    assert steps, f"no open {element} step"
    for step in steps:
        act(seeded, step, clock, **override)
    return steps


def _to_review(seeded, clock, instance_id):
    for element in ("acknowledge", "set_plan", "contribute", "report_progress"):
        if _steps(seeded, instance_id, element):
            _complete_all(seeded, clock, instance_id, element)
    _complete_all(seeded, clock, instance_id, "consolidate")


def test_straight_path_routes_every_step_to_its_unit(seeded, clock):
    iid = _start(seeded, clock, "weixi-2023-15", 1)
    acks = _steps(seeded, iid, "acknowledge")
    assert len(acks) == 3 + 6 + 10
    _complete_all(seeded, clock, iid, "acknowledge")
    (plan_step,) = _steps(seeded, iid)
    assert plan_step.element_id == "set_plan" and plan_step.unit.name == "县卫生健康局"
    act(
        seeded,
        plan_step,
        clock,
        support_due="2026-12-10",
        implement_due="2026-12-15",
        final_due="2026-12-20",
    )
    contributions = _steps(seeded, iid, "contribute")
    reports = _steps(seeded, iid, "report_progress")
    assert sorted(t.unit.name for t in contributions) == sorted(
        [
            "县发展和改革局",
            "县教育体育局",
            "县司法局",
            "县财政局",
            "县自然资源局",
            "县市场监督管理局",
            "县住房和城乡建设局",
            "县人力资源和社会保障局",
        ]
    )
    assert len(reports) == 10 and all(t.unit.name.endswith("党委、政府") for t in reports)
    assert {str(t.due_at)[:10] for t in contributions} == {"2026-12-10"}
    assert {str(t.due_at)[:10] for t in reports} == {"2026-12-15"}
    _complete_all(seeded, clock, iid, "contribute")
    # The lead consolidates only when every branch is in.
    assert not _steps(seeded, iid, "consolidate")
    _complete_all(seeded, clock, iid, "report_progress")
    (consolidate,) = _steps(seeded, iid)
    assert consolidate.unit.name == "县卫生健康局" and consolidate.position.kind == "liaison"
    act(seeded, consolidate, clock)
    (review,) = _steps(seeded, iid)
    assert review.element_id == "review" and review.position.kind == "office_staff"
    act(seeded, review, clock)
    with seeded() as s:
        inst = s.get(Instance, iid)
        assert inst.status == InstanceStatus.COMPLETED and inst.completed_at is not None


def test_sent_back_returns_to_the_lead_with_the_reason(seeded, clock):
    iid = _start(seeded, clock, "weixi-2023-15", 7)
    _to_review(seeded, clock, iid)
    _complete_all(seeded, clock, iid, "review", decision="send_back", reason="材料不全")
    (again,) = _steps(seeded, iid)
    assert again.element_id == "consolidate" and again.unit.name == "县卫生健康局"
    with seeded() as s:
        reasons = [
            h.data.get("reason")
            for h in s.scalars(
                select(HistoryEntry).where(
                    HistoryEntry.instance_id == iid, HistoryEntry.action == "completed"
                )
            )
        ]
        assert "材料不全" in reasons
    act(seeded, again, clock)
    _complete_all(seeded, clock, iid, "review")
    with seeded() as s:
        assert s.get(Instance, iid).status == InstanceStatus.COMPLETED


def test_sending_back_needs_a_reason(seeded, clock):
    from engine.errors import FormError

    iid = _start(seeded, clock, "weixi-2023-15", 7)
    _to_review(seeded, clock, iid)
    with pytest.raises(FormError, match="reason: is required"):
        _complete_all(seeded, clock, iid, "review", decision="send_back")


def _open_branch(seeded, clock, number=31):
    iid = _start(seeded, clock, "weixi-2023-15", number)
    _complete_all(seeded, clock, iid, "acknowledge")
    _complete_all(
        seeded,
        clock,
        iid,
        "set_plan",
        support_due="2026-12-10",
        implement_due="2026-12-15",
        final_due="2026-12-20",
    )
    return iid


def _ask_for_extension(seeded, clock, reason):
    """A township asks to report by 2027-01-10; returns the item and the asking step."""
    iid = _open_branch(seeded, clock)
    report = _steps(seeded, iid, "report_progress")[0]
    act(
        seeded,
        report,
        clock,
        action="request_extension",
        requested_due="2027-01-10",
        reason=reason,
        content="",
    )
    return iid, report


def _report_dates(seeded, iid, unit_id):
    return [
        str(t.due_at)[:10] for t in _steps(seeded, iid, "report_progress") if t.unit_id == unit_id
    ]


def test_an_approved_extension_moves_the_branch_due_date(seeded, clock):
    iid, report = _ask_for_extension(seeded, clock, "汛期道路中断")
    (decision,) = _steps(seeded, iid, "report_extension")
    assert decision.unit.name == "县卫生健康局" and decision.position.kind == "office_staff"
    act(seeded, decision, clock, approved=True, new_due="2027-01-05")
    assert _report_dates(seeded, iid, report.unit_id) == ["2027-01-05"]
    # Other townships keep their date.
    others = [t for t in _steps(seeded, iid, "report_progress") if t.unit_id != report.unit_id]
    assert {str(t.due_at)[:10] for t in others} == {"2026-12-15"}


def test_a_refused_extension_keeps_the_due_date(seeded, clock):
    iid, report = _ask_for_extension(seeded, clock, "人手不足")
    act(seeded, _steps(seeded, iid, "report_extension")[0], clock, approved=False, new_due="")
    assert _report_dates(seeded, iid, report.unit_id) == ["2026-12-15"]


def test_a_supporting_unit_can_ask_for_an_extension_too(seeded, clock):
    iid = _open_branch(seeded, clock, number=9)
    contribution = _steps(seeded, iid, "contribute")[0]
    act(
        seeded,
        contribution,
        clock,
        action="request_extension",
        requested_due="2026-12-30",
        reason="等待数据",
        content="",
    )
    act(seeded, _steps(seeded, iid, "contribution_extension")[0], clock, new_due="2026-12-30")
    renewed = [t for t in _steps(seeded, iid, "contribute") if t.unit_id == contribution.unit_id]
    assert [str(t.due_at)[:10] for t in renewed] == ["2026-12-30"]


def test_interim_reports_keep_the_branch_open_until_the_final_one(seeded, clock):
    iid = _open_branch(seeded, clock)
    report = _steps(seeded, iid, "report_progress")[0]
    act(seeded, report, clock, final=False, content="第一阶段")
    clock.advance(timedelta(days=1))
    again = [t for t in _steps(seeded, iid, "report_progress") if t.unit_id == report.unit_id]
    assert len(again) == 1 and again[0].id != report.id
    act(seeded, again[0], clock, final=True, content="全部完成")
    assert not [t for t in _steps(seeded, iid, "report_progress") if t.unit_id == report.unit_id]


def test_the_office_director_may_take_the_office_staffs_step(seeded, clock):
    iid = _start(seeded, clock, "weixi-2023-15", 7)
    _to_review(seeded, clock, iid)
    (review,) = _steps(seeded, iid, "review")
    with seeded.begin() as s:
        health = find_unit(s, "县卫生健康局", "weixi")
        director = position_of(s, health, "office_director")
        liaison = position_of(s, health, "liaison")
        with pytest.raises(PermissionDenied):
            complete_task(s, review.id, Actor(liaison.id), answer("review", clock), clock())
    with seeded.begin() as s:
        complete_task(s, review.id, Actor(director.id), answer("review", clock), clock())


def _completed_units(session, instance_id):
    by_element = defaultdict(set)
    for t in session.scalars(
        select(HumanTask).where(
            HumanTask.instance_id.in_(select(Instance.id).where(Instance.root_id == instance_id)),
            HumanTask.state == TaskState.COMPLETED,
        )
    ):
        assert t.completed_at is not None
        by_element[t.element_id].add(t.unit_id)
    return by_element


@pytest.mark.parametrize("plan", ["weixi-2023-15", "dehong-2023"])
def test_a_whole_list_runs_from_hand_out_to_closure(seeded, clock, plan):
    with seeded.begin() as s:
        started = hand_out(s, plan, None, clock())
    assert len(started) == {"weixi-2023-15": 31, "dehong-2023": 29}[plan]
    assert drive(seeded, clock) > len(started) * 4
    with seeded() as s:
        for inst in s.scalars(select(Instance).where(Instance.parent_id.is_(None))):
            assert inst.status == InstanceStatus.COMPLETED, inst.business_key
            task = s.get(PlanTask, inst.plan_task_id)
            lead_ids = [u.unit_id for u in task.units if u.role == Role.LEAD]
            office = task.plan.jurisdiction.office_unit_id
            done = _completed_units(s, inst.id)
            assert done["acknowledge"] == {u.unit_id for u in task.units}
            assert done["set_plan"] == done["consolidate"] == {lead_ids[0]}
            assert done.get("contribute", set()) == {
                u.unit_id
                for u in task.units
                if u.role == Role.SUPPORT or (u.role == Role.LEAD and u.unit_id != lead_ids[0])
            }
            assert done.get("report_progress", set()) == {
                u.unit_id for u in task.units if u.role == Role.IMPLEMENT
            }
            assert done["review"] == {office}
