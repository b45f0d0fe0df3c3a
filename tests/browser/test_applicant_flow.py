"""Medical assistance in a real browser: an applicant registers and applies from a phone with
the settlement statement attached; the health bureau's liaison opens the step from 待办, sees
the resident ID masked, unmasks it (recorded) and confirms; the applicant's timeline moves on."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.idcard import check_character
from engine.models import HistoryEntry, HumanTask, TaskState
from tests.browser.conftest import Contexts, Someone
from tests.browser.test_liaison_flow import PDF, PHONE, SLACK_PX, page_width, sign_in

pytestmark = pytest.mark.browser

ID = "53342319600101002" + check_character("53342319600101002")


def test_an_applicant_applies_and_the_health_bureau_confirms(
    contexts: Contexts,
    make_person: Callable[..., Someone],
    seeded: sessionmaker[Session],
    artifacts: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    statement = tmp_path / "结算单.pdf"
    statement.write_bytes(PDF)
    phone = contexts.open(PHONE["width"], PHONE["height"], phone=True).new_page()
    phone.goto("/login")
    phone.get_by_role("link", name="注册").click()
    phone.locator("#name").fill("和秀英")
    phone.locator("#login").fill("hexiuying")
    phone.locator("#password").fill("secret-123")
    phone.locator("#confirm").fill("secret-123")
    phone.get_by_role("button", name="注册").click()
    expect(phone).to_have_url(re.compile(r"/apply$"))

    phone.locator("#new-application").click()
    form = phone.locator("#application-form")
    form.locator("#f-jurisdiction").select_option("weixi")
    form.locator("#f-resident_id").fill(ID)
    form.locator("#f-phone").fill("13988776655")
    form.locator("#f-address").fill("保和镇")
    form.locator("#f-family_kind").select_option("child_deceased")
    form.locator("#f-relationship").select_option("parent")
    form.locator("#f-existing_support").select_option("none")
    form.locator("#f-hospital").fill("维西县人民医院")
    form.locator("#f-admitted_on").fill("2026-10-01")
    form.locator("#f-discharged_on").fill("2026-10-20")
    form.locator("#f-total_cost").fill("50000")
    form.locator("#f-basic_reimbursed").fill("20000")
    form.locator("#f-critical_reimbursed").fill("5000")
    form.locator("#f-files").set_input_files(statement)
    phone.screenshot(path=artifacts("application-phone"), full_page=True)
    assert page_width(phone) <= PHONE["width"] + SLACK_PX, "the application form scrolls sideways"
    form.get_by_role("button", name="提交申请").click()
    expect(phone).to_have_url(re.compile(r"/apply/\d+$"))
    expect(phone.locator("#status")).to_have_text("审核中")
    expect(phone.locator("#timeline")).to_contain_text("您提交了申请")
    assert ID not in phone.url

    desk = contexts.open().new_page()
    sign_in(desk, make_person("卫健联络员", "县卫生健康局"))
    with seeded() as s:
        step = s.scalars(
            select(HumanTask).where(
                HumanTask.element_id == "confirm_family", HumanTask.state == TaskState.READY
            )
        ).one()
    desk.locator(f'#inbox tr[data-step="{step.id}"]').get_by_role("link").first.click()
    expect(desk).to_have_url(re.compile(rf"/tasks/{step.id}$"))
    expect(desk.locator('[data-field="resident_id"]')).to_contain_text("533*************")
    desk.locator("#reveal-form button").click()
    expect(desk.locator('[data-field="resident_id"]')).to_contain_text(ID)
    desk.screenshot(path=artifacts("assistance-step-desktop"), full_page=True)
    desk.locator("#step-form #f-decision").select_option("confirm")
    desk.locator("#step-form").get_by_role("button", name="提交").click()
    expect(desk).to_have_url(re.compile(r"/inbox$"))

    phone.reload()
    expect(phone.locator("#timeline")).to_contain_text("卫生健康部门核实计划生育特殊家庭身份")
    expect(phone.locator("#timeline")).to_contain_text("正在县民政局办理")
    phone.screenshot(path=artifacts("application-status-phone"), full_page=True)
    with seeded() as s:
        assert s.scalars(select(HistoryEntry).where(HistoryEntry.action == "revealed")).one()
