"""The joint meeting's screens through the Flask client: the office calls a meeting, takes
attendance and drafts the minutes; members review and the convener signs through their steps;
the printable minutes, the progress report and the membership on a date; and who may see what."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from engine.clock import local_today, utcnow
from engine.models import HumanTask, Meeting, Minutes, MinutesStatus, TaskState
from tests.web.conftest import sign_in


def _ready(seeded, element: str) -> list[HumanTask]:  # type: ignore[no-untyped-def]
    with seeded() as s:
        return list(
            s.scalars(
                select(HumanTask)
                .where(HumanTask.element_id == element, HumanTask.state == TaskState.READY)
                .order_by(HumanTask.id)
            )
        )


def _meeting(**override: str) -> dict[str, str]:
    """The new-meeting form as the office fills it in, held today."""
    data = {
        "jurisdiction": "weixi",
        "kind": "plenary",
        "title": "2026年联席会议全体会议",
        "held_on": local_today(utcnow()).isoformat(),
        "place": "县政府三楼会议室",
        "agenda": "研究托育服务",
        "comprehensive": "1",
    }
    return data | override


def _call(client, seeded) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/meetings/new", data=_meeting())
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(re.search(r"/meetings/(\d+)$", response.headers["Location"]).group(1))


def _units(seeded, *names: str) -> list[int]:  # type: ignore[no-untyped-def]
    from engine.directory import find_unit

    with seeded() as s:
        return [find_unit(s, n, "weixi").id for n in names]


def _minutes_form(seeded, **override: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    lead, support = _units(seeded, "县卫生健康局", "县财政局")
    due = (local_today(utcnow()) + timedelta(days=60)).isoformat()
    data: dict[str, object] = {
        "number": "维西县优化生育政策联席会议纪要〔2026〕1号",
        "body": "会议听取了全县优化生育政策工作进展情况汇报。",
        "item-0-text": "制定托育机构建设补助办法",
        "item-0-lead": str(lead),
        "item-0-support": [str(support)],
        "item-0-due": due,
        "item-1-text": "",
    }
    data.update(override)
    return data


def test_the_office_runs_a_meeting_to_signed_minutes(client, seeded, make_person, app) -> None:  # type: ignore[no-untyped-def]
    office = make_person("office", "县卫生健康局", "office_staff")
    sign_in(client, office)
    index = client.get("/meetings").get_data(as_text=True)
    assert 'id="new-meeting-weixi"' in index and 'data-rule="weixi"' in index
    meeting_id = _call(client, seeded)
    page = client.get(f"/meetings/{meeting_id}").get_data(as_text=True)
    assert 'id="minutes-form"' in page and "县民政局" in page
    bad = client.post(f"/meetings/{meeting_id}/minutes", data=_minutes_form(seeded, number=""))
    assert bad.status_code == 400 and 'data-error="number"' in bad.get_data(as_text=True)
    assert (
        client.post(f"/meetings/{meeting_id}/minutes", data=_minutes_form(seeded)).status_code
        == 302
    )
    (draft,) = _ready(seeded, "draft_minutes")
    assert client.post(f"/tasks/{draft.id}", data={"note": ""}).status_code == 302

    # A member reviews from the step page, which shows the minutes.
    member = app.test_client()
    sign_in(member, make_person("civil-member", "县民政局", "member"))
    (review,) = [
        t for t in _ready(seeded, "member_review") if t.unit_id == _units(seeded, "县民政局")[0]
    ]
    step_page = member.get(f"/tasks/{review.id}").get_data(as_text=True)
    assert 'id="minutes-text"' in step_page and "制定托育机构建设补助办法" in step_page
    assert member.get(f"/meetings/{meeting_id}").status_code == 200  # a seat at the meeting
    assert member.post(f"/meetings/{meeting_id}/attendance").status_code == 403
    assert (
        member.post(
            f"/tasks/{review.id}", data={"decision": "comment", "comment": "请明确时限"}
        ).status_code
        == 302
    )
    from engine.clock import FixedClock
    from tests.helpers import act

    now = FixedClock(utcnow())
    for step in _ready(seeded, "member_review"):
        act(seeded, step, now)
    (finalize,) = _ready(seeded, "finalize_minutes")
    page = client.get(f"/meetings/{meeting_id}").get_data(as_text=True)
    assert 'id="reviews"' in page and "请明确时限" in page and 'id="minutes-form"' in page
    assert client.post(f"/tasks/{finalize.id}", data={"note": ""}).status_code == 302

    convener = app.test_client()
    sign_in(convener, make_person("convener", "县人民政府", "convener"))
    (sign,) = _ready(seeded, "sign_minutes")
    assert convener.post(f"/tasks/{sign.id}", data={"decision": "sign"}).status_code == 302
    with seeded() as s:
        minutes = s.scalars(select(Minutes).where(Minutes.meeting_id == meeting_id)).one()
        assert minutes.status == MinutesStatus.SIGNED
        minutes_id = minutes.id
    printed = client.get(f"/meetings/{meeting_id}/minutes/{minutes_id}/print").get_data(
        as_text=True
    )
    assert (
        'id="signature"' in printed and "convener" in printed and 'id="not-signed"' not in printed
    )
    assert "县财政局" in printed and "维西县优化生育政策联席会议纪要〔2026〕1号" in printed
    report = client.get("/meetings/report?jurisdiction=weixi").get_data(as_text=True)
    assert 'data-state="open"' in report and "制定托育机构建设补助办法" in report
    # Signed minutes are no longer editable; a correction needs a reason.
    page = client.get(f"/meetings/{meeting_id}").get_data(as_text=True)
    assert 'id="minutes-form"' not in page and 'id="correct-form"' in page
    client.post(f"/meetings/{meeting_id}/minutes/{minutes_id}/correct", data={"reason": ""})
    with seeded() as s:
        assert len(s.scalars(select(Minutes).where(Minutes.meeting_id == meeting_id)).all()) == 1


def test_outsiders_see_no_meeting(client, seeded, make_person, app) -> None:  # type: ignore[no-untyped-def]
    office = app.test_client()
    sign_in(office, make_person("office", "县卫生健康局", "office_staff"))
    meeting_id = _call(office, seeded)
    sign_in(client, make_person("finance-liaison", "县财政局"))
    assert client.get(f"/meetings/{meeting_id}").status_code == 404
    assert client.get("/meetings/new?jurisdiction=weixi").status_code == 403
    assert client.post(f"/meetings/{meeting_id}/minutes", data={}).status_code == 404
    assert f"/meetings/{meeting_id}" not in client.get("/meetings").get_data(as_text=True)
    with seeded() as s:
        assert s.get(Meeting, meeting_id).minutes == []


def test_membership_on_a_date(client, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, make_person("office", "县卫生健康局", "office_staff"))
    page = client.get("/meetings/members?jurisdiction=weixi").get_data(as_text=True)
    assert ("李春梅" in page and "木 艳" in page) or "木艳" in page
    before = client.get("/meetings/members?jurisdiction=weixi&on=2020-01-01").get_data(as_text=True)
    assert "李春梅" not in before  # nobody held the seats before the roster was loaded


def test_a_meeting_date_not_typed_as_year_month_day_is_refused(client, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, make_person("office", "县卫生健康局", "office_staff"))
    for typed in ("20261201", "2026-W49-1", "2026/12/01", "2026-02-30"):
        response = client.post("/meetings/new", data=_meeting(held_on=typed))
        assert response.status_code == 400, typed  # the form again, with the field's error
        assert "YYYY-MM-DD" in response.get_data(as_text=True)
    with seeded() as s:
        assert s.scalars(select(Meeting)).all() == []
    page = client.get("/meetings/members?jurisdiction=weixi&on=20200101").get_data(as_text=True)
    assert "YYYY-MM-DD" in page  # said, and today's membership shown instead
