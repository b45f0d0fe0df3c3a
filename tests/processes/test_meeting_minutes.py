"""The joint meeting end to end through the engine: calling a meeting, the minutes' review and
sign-off (processes/meeting_minutes.bpmn), agreed items routed as list items, corrections,
succession in the middle of a review, and the yearly rule."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import meetings
from engine.clock import FixedClock, local_today
from engine.directory import find_unit, hand_over, holders, jurisdiction, position_of
from engine.errors import Conflict, FormError, PermissionDenied
from engine.models import (
    Attendance,
    HumanTask,
    Instance,
    Meeting,
    MeetingKind,
    Minutes,
    MinutesStatus,
    Person,
    PositionKind,
    Role,
    TaskState,
)
from engine.runtime import Actor, complete_task
from tests.helpers import act, answer


def _unit(s: Session, name: str) -> int:
    return find_unit(s, name, "weixi").id


def call_meeting(
    seeded: sessionmaker[Session], clock: FixedClock, delegate: bool = False, absent: str = ""
) -> int:
    with seeded.begin() as s:
        weixi = jurisdiction(s, "weixi")
        chair = None
        if delegate:
            chair = position_of(s, find_unit(s, "县卫生健康局"), "deputy_convener").id
        meeting = meetings.create_meeting(
            s,
            weixi,
            meetings.MeetingDraft(
                MeetingKind.PLENARY,
                "2026年优化生育政策工作联席会议全体会议",
                local_today(clock()),
                place="县政府三楼会议室",
                agenda="一、通报工作进展；二、研究托育服务体系建设",
                comprehensive=True,
                chair_position_id=chair,
            ),
            clock(),
        )
        marks = {}
        for p in meeting.participants:
            unit = p.position.unit.name if p.position else ""
            marks[p.id] = (Attendance.ABSENT if unit == absent else Attendance.PRESENT, "")
        meetings.record_attendance(s, meeting, marks)
        return meeting.id


def draft(s: Session, clock: FixedClock, extra: bool = False) -> meetings.MinutesDraft:
    due = local_today(clock()) + timedelta(days=60)
    items = [
        meetings.ItemDraft(
            1, "制定托育机构建设补助办法", _unit(s, "县卫生健康局"), (_unit(s, "县财政局"),), due
        ),
        meetings.ItemDraft(2, "摸底全县3岁以下婴幼儿入托需求", _unit(s, "县教育体育局"), (), due),
    ]
    if extra:
        items.append(
            meetings.ItemDraft(
                3, "开展托育从业人员培训", _unit(s, "县人力资源和社会保障局"), (), due
            )
        )
    return meetings.MinutesDraft("维西县优化生育政策联席会议纪要〔2026〕1号", "会议听取了……", items)


def office(s: Session) -> Actor:
    return Actor(position_of(s, find_unit(s, "县卫生健康局"), "office_staff").id)


def start(seeded: sessionmaker[Session], clock: FixedClock, meeting_id: int) -> int:
    with seeded.begin() as s:
        minutes = meetings.start_minutes(
            s, s.get(Meeting, meeting_id), draft(s, clock), office(s), clock()
        )
        return minutes.id


def steps(
    seeded: sessionmaker[Session], minutes_id: int, element: str | None = None
) -> list[HumanTask]:
    with seeded() as s:
        instance_id = s.get(Minutes, minutes_id).instance_id
        tree = select(Instance.id).where(Instance.root_id == instance_id)
        query = select(HumanTask).where(
            HumanTask.instance_id.in_(tree), HumanTask.state == TaskState.READY
        )
        if element:
            query = query.where(HumanTask.element_id == element)
        return list(s.scalars(query.order_by(HumanTask.id)))


def review_all(seeded: sessionmaker[Session], clock: FixedClock, minutes_id: int) -> int:
    reviews = steps(seeded, minutes_id, "member_review")
    for i, step in enumerate(reviews):
        act(
            seeded,
            step,
            clock,
            **({"decision": "comment", "comment": "建议明确时限"} if i == 0 else {}),
        )
    return len(reviews)


def status(seeded: sessionmaker[Session], minutes_id: int) -> MinutesStatus:
    with seeded() as s:
        return s.get(Minutes, minutes_id).status


def test_straight_sign_off_issues_the_minutes_and_routes_the_items(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    meeting_id = call_meeting(seeded, clock, absent="县统计局")
    minutes_id = start(seeded, clock, meeting_id)
    (draft_step,) = steps(seeded, minutes_id)
    assert draft_step.element_id == "draft_minutes"
    act(seeded, draft_step, clock)
    reviewed = review_all(seeded, clock, minutes_id)
    with seeded() as s:
        meeting = s.get(Meeting, meeting_id)
        seated = [p for p in meeting.participants if p.position is not None]
        # every attending member but the absent one and the chair, who signs
        assert reviewed == len(seated) - 2
        units = {p.position.unit.name for p in seated}
        assert "县统计局" in units
    (finalize,) = steps(seeded, minutes_id)
    assert finalize.element_id == "finalize_minutes"
    act(seeded, finalize, clock)
    assert status(seeded, minutes_id) == MinutesStatus.SIGNING
    (sign,) = steps(seeded, minutes_id)
    with seeded() as s:
        assert sign.position_id == meetings.convener(s, jurisdiction(s, "weixi")).id
    act(seeded, sign, clock)
    assert status(seeded, minutes_id) == MinutesStatus.SIGNED
    # issued: every member unit's liaison acknowledges receipt
    acks = [t for t in steps(seeded, minutes_id) if t.element_id == "acknowledge"]
    with seeded() as s:
        minutes = s.get(Minutes, minutes_id)
        assert minutes.signed_by_position.kind == PositionKind.CONVENER and minutes.signed_at
        liaison = {s.get(type(minutes.signed_by_position), t.position_id).kind for t in acks}
        assert len(acks) > 30 and liaison == {PositionKind.LIAISON}
        # the agreed items run as routed items with their own units
        plan = minutes.plan
        assert plan is not None and [t.number for t in plan.tasks] == [1, 2]
        first = plan.tasks[0]
        assert [u.unit.name for u in first.units if u.role == Role.LEAD] == ["县卫生健康局"]
        assert [u.unit.name for u in first.units if u.role == Role.SUPPORT] == ["县财政局"]
        routed = s.scalars(
            select(Instance).where(
                Instance.plan_task_id.in_([t.id for t in plan.tasks]), Instance.parent_id.is_(None)
            )
        ).all()
        assert len(routed) == 2 and all(i.process_id == "task_routing" for i in routed)
        progress = meetings.agreed_item_progress(s, jurisdiction(s, "weixi"), local_today(clock()))
        assert [(p.item.number, p.state, p.lead) for p in progress] == [
            (1, "open", "县卫生健康局"),
            (2, "open", "县教育体育局"),
        ]
        with pytest.raises(Conflict):
            meetings.edit_minutes(s, minutes, draft(s, clock), minutes.revision, clock())


def test_returned_by_the_convener_revised_and_signed(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    minutes_id = start(seeded, clock, call_meeting(seeded, clock))
    act(seeded, steps(seeded, minutes_id)[0], clock)
    with seeded.begin() as s:  # nobody edits the text while the members review it
        minutes = s.get(Minutes, minutes_id)
        with pytest.raises(Conflict):
            meetings.edit_minutes(s, minutes, draft(s, clock), minutes.revision, clock())
    review_all(seeded, clock, minutes_id)
    act(seeded, steps(seeded, minutes_id)[0], clock)
    (sign,) = steps(seeded, minutes_id)
    with pytest.raises(FormError):  # returning needs the comments
        act(seeded, sign, clock, decision="return")
    act(seeded, sign, clock, decision="return", comment="第二项需明确牵头单位")
    assert status(seeded, minutes_id) == MinutesStatus.DRAFT
    (finalize,) = steps(seeded, minutes_id)
    assert finalize.element_id == "finalize_minutes"
    with seeded.begin() as s:
        minutes = s.get(Minutes, minutes_id)
        meetings.edit_minutes(s, minutes, draft(s, clock, extra=True), minutes.revision, clock())
    act(seeded, finalize, clock)
    act(seeded, steps(seeded, minutes_id)[0], clock)
    assert status(seeded, minutes_id) == MinutesStatus.SIGNED
    with seeded() as s:
        assert [t.number for t in s.get(Minutes, minutes_id).plan.tasks] == [1, 2, 3]


def test_signed_by_the_delegated_deputy(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    minutes_id = start(seeded, clock, call_meeting(seeded, clock, delegate=True))
    act(seeded, steps(seeded, minutes_id)[0], clock)
    review_all(seeded, clock, minutes_id)
    act(seeded, steps(seeded, minutes_id)[0], clock)
    (sign,) = steps(seeded, minutes_id)
    with seeded.begin() as s:
        weixi = jurisdiction(s, "weixi")
        assert s.get(HumanTask, sign.id).position.kind == PositionKind.DEPUTY_CONVENER
        with pytest.raises(PermissionDenied):  # the convener delegated: the deputy signs
            complete_task(
                s, sign.id, Actor(meetings.convener(s, weixi).id), {"decision": "sign"}, clock()
            )
    act(seeded, sign, clock)
    with seeded() as s:
        assert s.get(Minutes, minutes_id).signed_by_position.kind == PositionKind.DEPUTY_CONVENER


def test_a_member_replaced_mid_review_hands_the_step_to_the_successor(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    minutes_id = start(seeded, clock, call_meeting(seeded, clock))
    act(seeded, steps(seeded, minutes_id)[0], clock)
    with seeded() as s:
        seat = position_of(s, find_unit(s, "县民政局"), "member")
        (predecessor,) = holders(s, seat.id)
        predecessor_id, seat_id = predecessor.id, seat.id
    (review,) = [t for t in steps(seeded, minutes_id, "member_review") if t.position_id == seat_id]
    later = FixedClock(clock() + timedelta(days=1))
    with seeded.begin() as s:
        successor = Person(name="新任副局长", title="副局长")
        s.add(successor)
        hand_over(s, s.get(type(seat), seat_id), successor, later())
        s.flush()
        successor_id = successor.id
    with seeded.begin() as s, pytest.raises(PermissionDenied):
        complete_task(
            s, review.id, Actor(seat_id, predecessor_id), answer("minutes_review", later), later()
        )
    with seeded.begin() as s:
        complete_task(
            s, review.id, Actor(seat_id, successor_id), answer("minutes_review", later), later()
        )
    with seeded() as s:
        on_start = {
            x.position.id: x.holders
            for x in meetings.membership(s, jurisdiction(s, "weixi"), local_today(clock()))
        }
        on_next = {
            x.position.id: x.holders
            for x in meetings.membership(
                s, jurisdiction(s, "weixi"), local_today(later()) + timedelta(days=1)
            )
        }
        assert [p.id for p in on_start[seat_id]] == [predecessor_id]
        assert [p.id for p in on_next[seat_id]] == [successor_id]


def test_a_correction_is_a_new_version_that_supersedes_and_routes_only_new_items(
    seeded, clock
) -> None:  # type: ignore[no-untyped-def]
    meeting_id = call_meeting(seeded, clock)
    minutes_id = start(seeded, clock, meeting_id)
    for _ in range(4):  # draft, reviews, finalize, sign
        for step in steps(seeded, minutes_id):
            if step.element_id != "acknowledge":
                act(seeded, step, clock)
    assert status(seeded, minutes_id) == MinutesStatus.SIGNED
    with seeded.begin() as s:
        minutes = s.get(Minutes, minutes_id)
        with pytest.raises(FormError):
            meetings.correct_minutes(s, minutes, "", office(s), clock())
        v2 = meetings.correct_minutes(s, minutes, "第一项补助标准表述有误", office(s), clock())
        assert v2.version == 2 and v2.status == MinutesStatus.DRAFT
        v2_id = v2.id
    with seeded.begin() as s:
        v2 = s.get(Minutes, v2_id)
        meetings.edit_minutes(s, v2, draft(s, clock, extra=True), v2.revision, clock())
    for _ in range(4):
        for step in steps(seeded, v2_id):
            if step.element_id != "acknowledge":
                act(seeded, step, clock)
    with seeded() as s:
        assert s.get(Minutes, minutes_id).status == MinutesStatus.SUPERSEDED
        v2 = s.get(Minutes, v2_id)
        assert v2.status == MinutesStatus.SIGNED and v2.correction_reason
        routed = s.scalars(
            select(Instance.business_key).where(Instance.process_id == "task_routing")
        ).all()
        assert sorted(routed) == [
            f"meeting-{meeting_id}-v1#1",
            f"meeting-{meeting_id}-v1#2",
            f"meeting-{meeting_id}-v2#3",
        ]
        progress = meetings.agreed_item_progress(s, jurisdiction(s, "weixi"), local_today(clock()))
        assert [(p.item.number, p.state) for p in progress] == [
            (1, "open"),
            (2, "open"),
            (3, "open"),
        ]


def test_the_yearly_rule(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        weixi = jurisdiction(s, "weixi")
        rule = meetings.yearly_rule(s, weixi, date(2026, 12, 2))
        # data/directory/weixi.toml sets the day
        assert rule.held is None and rule.due and rule.deadline == date(2026, 11, 15)
        meetings.set_yearly_deadline(s, weixi, "12-20")
        assert not meetings.yearly_rule(s, weixi, date(2026, 12, 2)).due
        with pytest.raises(FormError):
            meetings.set_yearly_deadline(s, weixi, "13-01")
    call_meeting(seeded, clock)  # comprehensive, held in 2026
    with seeded() as s:
        rule = meetings.yearly_rule(s, jurisdiction(s, "weixi"), date(2026, 12, 31))
        assert rule.held is not None and not rule.due
        assert meetings.yearly_rule(s, jurisdiction(s, "weixi"), date(2027, 12, 31)).due


def test_bad_minutes_are_refused_field_by_field(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    meeting_id = call_meeting(seeded, clock)
    with seeded.begin() as s:
        past = local_today(clock()) - timedelta(days=1)
        bad = meetings.MinutesDraft(
            "",
            "x",
            [
                meetings.ItemDraft(1, "", 999999, (), past),
                meetings.ItemDraft(1, "y", _unit(s, "县财政局"), (_unit(s, "县财政局"),), past),
            ],
        )
        with pytest.raises(FormError) as err:
            meetings.start_minutes(s, s.get(Meeting, meeting_id), bad, office(s), clock())
    assert {
        "number",
        "item 1",
        "item 1 text",
        "item 1 lead",
        "item 1 support",
        "item 1 due",
    } <= set(err.value.errors)
    with seeded() as s:
        assert s.scalars(select(Minutes)).all() == []
