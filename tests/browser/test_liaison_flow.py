"""A liaison's day in a real browser: sign in, find the step in 待办, answer it with evidence,
and the lead unit finds that evidence when it consolidates; on a phone too, and in English.

Weixi task 9 has three lead units: the first, 县发展和改革局, sets the plan and consolidates;
the co-leads 县财政局 and 县卫生健康局 contribute like the supporting unit 县住房和城乡建设局."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FixedClock
from engine.models import Attachment, HumanTask, TaskState
from engine.routing import hand_out
from tests.browser.conftest import PASSWORD, Contexts, Someone
from tests.helpers import act, open_steps

pytestmark = pytest.mark.browser

LEAD = "县发展和改革局"
SUPPORT = "县住房和城乡建设局"
CO_LEADS = ("县财政局", "县卫生健康局")
PHONE = {"width": 390, "height": 844}
SLACK_PX = 1  # rounding of fractional layout widths


def _pdf() -> bytes:
    """A small, well-formed one-page PDF (objects, cross-reference table, trailer)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


PDF = _pdf()


@pytest.fixture
def item(seeded: sessionmaker[Session], clock: FixedClock) -> int:
    with seeded.begin() as s:
        (instance,) = hand_out(s, "weixi-2023-15", [9], clock())
    return instance.id


def _step(seeded: sessionmaker[Session], item: int, unit: str, element: str) -> HumanTask:
    with seeded() as s:
        for step in open_steps(s, item):
            if step.unit.name == unit and step.element_id == element:
                return step
    raise AssertionError(f"no open {element} step for {unit}")


@pytest.fixture
def contribution(seeded: sessionmaker[Session], clock: FixedClock, item: int) -> HumanTask:
    """Every unit has acknowledged and the lead has set the plan: 住建局 is to contribute."""
    for unit in (LEAD, *CO_LEADS, SUPPORT):
        act(seeded, _step(seeded, item, unit, "acknowledge"), clock)
    act(seeded, _step(seeded, item, LEAD, "set_plan"), clock)
    return _step(seeded, item, SUPPORT, "contribute")


def sign_in(page: Page, who: Someone) -> None:
    """Through the real form, CSRF token and all."""
    page.goto("/login")
    page.locator("#login").fill(who.login)
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))


def sign_out(page: Page) -> None:
    page.locator("header.top").get_by_role("button", name="退出").click()
    expect(page).to_have_url(re.compile(r"/login$"))


def page_width(page: Page) -> int:
    width: int = page.evaluate("document.documentElement.scrollWidth")
    return width


def test_a_contribution_with_evidence_reaches_the_lead(
    contexts: Contexts,
    make_person: Callable[..., Someone],
    seeded: sessionmaker[Session],
    clock: FixedClock,
    item: int,
    contribution: HumanTask,
    artifacts: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    evidence = tmp_path / "报告.pdf"
    evidence.write_bytes(PDF)
    page = contexts.open().new_page()

    sign_in(page, make_person("住建联络员", SUPPORT))
    expect(page.locator("main h1")).to_contain_text("待办")
    expect(page.locator("#inbox-count")).to_have_text("1")
    row = page.locator(f'#inbox tr[data-step="{contribution.id}"]')
    expect(row).to_contain_text("维西县 第9项")
    page.screenshot(path=artifacts("inbox-desktop"), full_page=True)

    row.get_by_role("link", name="提供配合材料").click()
    expect(page).to_have_url(re.compile(rf"/tasks/{contribution.id}$"))
    expect(page.locator("#task-text")).to_contain_text("设立地方支持托育建设项目库")
    form = page.locator("#step-form")
    form.locator("#f-content").fill("已梳理托育建设项目用地情况,见附件。")
    form.locator("#f-files").set_input_files(evidence)
    page.screenshot(path=artifacts("task-desktop"), full_page=True)
    form.get_by_role("button", name="提交").click()

    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.locator(".flash")).to_have_text("已提交。")
    expect(row).to_have_count(0)
    expect(page.locator("#inbox-count")).to_have_text("0")
    with seeded() as s:
        assert s.get(HumanTask, contribution.id).state == TaskState.COMPLETED
        (attachment,) = s.scalars(select(Attachment))
        assert (attachment.filename, attachment.human_task_id) == ("报告.pdf", contribution.id)
    sign_out(page)

    for unit in CO_LEADS:
        act(seeded, _step(seeded, item, unit, "contribute"), clock)
    consolidate = _step(seeded, item, LEAD, "consolidate")
    sign_in(page, make_person("发改联络员", LEAD))
    row = page.locator(f'#inbox tr[data-step="{consolidate.id}"]')
    row.get_by_role("link", name="汇总反馈").click()
    expect(page).to_have_url(re.compile(rf"/tasks/{consolidate.id}$"))
    expect(page.locator("#step-form")).to_be_visible()
    link = page.locator("#attachments + ul").get_by_role("link", name="报告.pdf")
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "报告.pdf"
    assert Path(download.path()).read_bytes() == PDF


class SidewaysScroll(AssertionError):
    """The page is wider than the screen (only this failure is the known, expected one)."""


def test_a_phone_needs_no_sideways_scrolling(
    contexts: Contexts,
    make_person: Callable[..., Someone],
    contribution: HumanTask,
    artifacts: Callable[[str], Path],
) -> None:
    page = contexts.open(PHONE["width"], PHONE["height"], phone=True).new_page()
    sign_in(page, make_person("住建联络员", SUPPORT))
    expect(page.locator(f'#inbox tr[data-step="{contribution.id}"]')).to_be_visible()
    page.screenshot(path=artifacts("inbox-phone"), full_page=True)
    assert page_width(page) <= PHONE["width"] + SLACK_PX, "the inbox scrolls sideways"

    page.goto(f"/tasks/{contribution.id}")
    submit = page.locator("#step-form").get_by_role("button", name="提交")
    submit.scroll_into_view_if_needed()
    expect(submit).to_be_in_viewport()
    box = submit.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.screenshot(path=artifacts("task-phone"), full_page=True)
    if (width := page_width(page)) > PHONE["width"] + SLACK_PX:
        raise SidewaysScroll(f"the task page is {width} px wide on a {PHONE['width']} px phone")


def test_english_on_request(
    contexts: Contexts, make_person: Callable[..., Someone], item: int
) -> None:
    page = contexts.open().new_page()
    sign_in(page, make_person("住建联络员", SUPPORT))
    expect(page.locator("main h1")).to_contain_text("待办")

    page.locator("header.top").get_by_role("link", name="English").click()
    expect(page).to_have_url(re.compile(r"/inbox\??$"))
    expect(page.locator("main h1")).to_contain_text("Inbox")
    expect(page.locator("header.top")).to_contain_text("Sign out")

    page.locator("header.top").get_by_role("link", name="中文").click()
    expect(page.locator("main h1")).to_contain_text("待办")
