"""The office director in a real browser: the dashboard, filtered to one unit, down to that
unit's overdue step, and a reminder (催办) sent from it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FixedClock, utcnow
from engine.directory import find_unit
from engine.models import HistoryEntry
from engine.routing import hand_out
from tests.browser.conftest import Contexts, Someone
from tests.browser.test_liaison_flow import sign_in

pytestmark = pytest.mark.browser


def test_the_director_filters_to_a_unit_and_reminds_it(
    contexts: Contexts,
    make_person: Callable[..., Someone],
    seeded: sessionmaker[Session],
    artifacts: Callable[[str], Path],
) -> None:
    week_ago = FixedClock(utcnow() - timedelta(days=7))
    with seeded.begin() as s:
        hand_out(s, "weixi-2023-15", [4], week_ago())
        police = find_unit(s, "县公安局", "weixi").id
    make_person("公安联络员", "县公安局")
    page = contexts.open().new_page()
    sign_in(page, make_person("主任", "县卫生健康局", "office_director"))
    page.locator("header.top").get_by_role("link", name="督办看板").click()
    expect(page.locator("#by-unit")).to_contain_text("县公安局")
    page.screenshot(path=artifacts("dashboard-desktop"), full_page=True)
    page.locator("#f-unit").select_option(str(police))
    page.locator("#filters").get_by_role("button").click()
    expect(page.locator("#by-unit tbody tr")).to_have_count(1)
    row = page.locator(f'#by-unit tr[data-unit="{police}"]')
    row.locator("td[data-overdue] a").click()
    expect(page.locator("#drill tbody tr")).to_have_count(1)
    page.locator("#drill").get_by_role("link", name="签收").click()
    expect(page).to_have_url(re.compile(r"/tasks/\d+$"))
    page.locator("#f-remind-note").fill("请今天完成签收")
    page.locator("#remind-form").get_by_role("button").click()
    expect(page.locator(".flash")).to_contain_text("已发出催办")
    with seeded() as s:
        entry = s.scalars(select(HistoryEntry).where(HistoryEntry.action == "urged")).one()
        assert entry.data == {"note": "请今天完成签收"}
