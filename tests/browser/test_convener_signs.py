"""The convener signs the minutes in a real browser: the office has drafted them and the
members have reviewed; the convener opens the step from 待办, reads the minutes and the review
comments, signs (签发), and the printable minutes carry the signature."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import meetings
from engine.clock import FixedClock, local_today
from engine.directory import find_unit, jurisdiction, position_of
from engine.models import HumanTask, MeetingKind, Minutes, MinutesStatus, TaskState
from engine.runtime import Actor
from tests.browser.conftest import Contexts, Someone
from tests.browser.test_liaison_flow import sign_in
from tests.helpers import act

pytestmark = pytest.mark.browser


@pytest.fixture
def awaiting_signature(seeded: sessionmaker[Session], clock: FixedClock) -> int:
    with seeded.begin() as s:
        meeting = meetings.create_meeting(
            s,
            jurisdiction(s, "weixi"),
            meetings.MeetingDraft(
                MeetingKind.PLENARY, "2026年联席会议全体会议", local_today(clock())
            ),
            clock(),
        )
        due = local_today(clock()) + timedelta(days=60)
        draft = meetings.MinutesDraft(
            "维西县优化生育政策联席会议纪要〔2026〕1号",
            "会议听取了全县优化生育政策工作进展情况汇报。",
            [
                meetings.ItemDraft(
                    1, "制定托育机构建设补助办法", find_unit(s, "县卫生健康局").id, (), due
                )
            ],
        )
        office = Actor(position_of(s, find_unit(s, "县卫生健康局"), "office_staff").id)
        minutes_id = meetings.start_minutes(s, meeting, draft, office, clock()).id
    for element in ("draft_minutes", "member_review", "finalize_minutes"):
        with seeded() as s:
            steps = list(
                s.scalars(
                    select(HumanTask).where(
                        HumanTask.element_id == element, HumanTask.state == TaskState.READY
                    )
                )
            )
        for i, step in enumerate(steps):
            extra = (
                {"decision": "comment", "comment": "建议明确补助标准"}
                if element == "member_review" and i == 0
                else {}
            )
            act(seeded, step, clock, **extra)
    return minutes_id


def test_the_convener_signs_the_minutes(
    contexts: Contexts,
    make_person: Callable[..., Someone],
    seeded: sessionmaker[Session],
    awaiting_signature: int,
    artifacts: Callable[[str], Path],
) -> None:
    page = contexts.open().new_page()
    sign_in(page, make_person("召集人", "县人民政府", "convener"))
    row = page.locator("#inbox tr", has_text="签发会议纪要")
    expect(row).to_have_count(1)
    row.get_by_role("link", name="签发会议纪要").click()
    expect(page.locator("#minutes-text")).to_contain_text(
        "会议听取了全县优化生育政策工作进展情况汇报"
    )
    expect(page.locator("#agreed-items")).to_contain_text("县卫生健康局")
    expect(page.locator("#reviews")).to_contain_text("建议明确补助标准")
    page.locator("#step-form #f-decision").select_option("sign")
    page.screenshot(path=artifacts("minutes-sign-desktop"), full_page=True)
    page.locator("#step-form").get_by_role("button", name="提交").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    with seeded() as s:
        minutes = s.get(Minutes, awaiting_signature)
        assert minutes.status == MinutesStatus.SIGNED
        meeting_id = minutes.meeting_id
    page.goto(f"/meetings/{meeting_id}/minutes/{awaiting_signature}/print")
    expect(page.locator("#signature")).to_contain_text("召集人")
    expect(page.locator("#not-signed")).to_have_count(0)
    page.screenshot(path=artifacts("minutes-print"), full_page=True)
