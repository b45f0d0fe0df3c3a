"""The office director's dashboard through the Flask client: the numbers on the page, the unit
head's narrower view, the drill-down, and the exports read back."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from openpyxl import load_workbook
from sqlalchemy import select

from engine.clock import FixedClock, utcnow
from engine.directory import find_unit
from engine.routing import hand_out
from tests.helpers import act, open_steps
from tests.web.conftest import sign_in


def _world(seeded) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Task 4 handed out a week ago; the police bureau acknowledged in time, the rest are late."""
    week_ago = FixedClock(utcnow() - timedelta(days=7))
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [4], week_ago())
        police = find_unit(s, "县公安局", "weixi").id
        item_id = item.id
    with seeded() as s:
        steps = {t.unit_id: t for t in open_steps(s, item_id)}
    act(seeded, steps[police], week_ago)
    return len(steps), police


def test_the_director_sees_the_numbers_and_drills_down(app, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    n, police = _world(seeded)
    client = app.test_client()
    sign_in(client, make_person("director", "县卫生健康局", "office_director"))
    page = client.get("/dashboard").get_data(as_text=True)
    assert 'data-nav="dashboard"' in page

    def total(name: str) -> str:
        return re.search(rf'data-total="{name}">(?:<a[^>]*>)?([^<]+)<', page).group(1)

    assert total("overdue") == str(n - 1) and total("completed") == "1"
    assert total("due_soon") == "0" and total("on_time_rate") == "100%"
    assert f'data-unit="{police}"' in page and 'id="chart-overdue"' in page and "<svg" in page
    drill = client.get("/dashboard/steps?jurisdiction=weixi&status=overdue").get_data(as_text=True)
    assert drill.count('data-step="') == n - 1
    one = client.get(f"/dashboard?jurisdiction=weixi&unit={police}").get_data(as_text=True)
    assert one.count('data-unit="') == 1
    # Exports, read back.
    raw = client.get("/dashboard/export.csv?jurisdiction=weixi").data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(raw)))
    assert rows[0][:3] == ["单位", "牵头·在办", "配合·在办"] and len(rows) == n + 1
    book = load_workbook(io.BytesIO(client.get("/dashboard/export.xlsx?jurisdiction=weixi").data))
    sheet = book.active
    assert sheet.title == "按单位统计" and sheet.cell(1, 7).value == "已逾期"
    overdue = {sheet.cell(r, 1).value: sheet.cell(r, 7).value for r in range(2, sheet.max_row + 1)}
    assert sum(overdue.values()) == n - 1 and overdue["县公安局"] == 0
    # Every table of the page exports, with Chinese headers.
    for table, first in (("lists", "清单"), ("steps", "事项"), ("indicators", "指标")):
        data = client.get(f"/dashboard/export.csv?jurisdiction=weixi&table={table}").data
        assert next(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[0] == first
    steps = load_workbook(
        io.BytesIO(
            client.get("/dashboard/export.xlsx?jurisdiction=weixi&table=steps&status=overdue").data
        )
    ).active
    assert steps.title == "事项明细" and steps.max_row == n  # a header and the n - 1 late steps
    assert client.get("/dashboard/export.csv?table=nonsense").status_code == 404


def test_a_unit_head_sees_only_the_unit_and_a_liaison_nothing(app, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    _n, police = _world(seeded)
    head, liaison = app.test_client(), app.test_client()
    sign_in(head, make_person("police-head", "县公安局", "head"))
    page = head.get(f"/dashboard?unit={police + 1}").get_data(as_text=True)
    assert re.findall(r'data-unit="(\d+)"', page) == [str(police)]
    assert 'id="f-unit"' not in page
    sign_in(liaison, make_person("police-liaison", "县公安局"))
    assert liaison.get("/dashboard").status_code == 403
    assert liaison.get("/dashboard/export.csv").status_code == 403


def test_the_bulletin_scores_units_by_the_formula(app, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    from engine.directory import jurisdiction
    from engine.models import JurisdictionSetting

    app.config["WTF_CSRF_ENABLED"] = False
    n, police = _world(seeded)
    with seeded.begin() as s:
        weixi = jurisdiction(s, "weixi").id
        s.add(JurisdictionSetting(jurisdiction_id=weixi, key="score.per_overdue_day", value="10"))
    client = app.test_client()
    sign_in(client, make_person("director", "县卫生健康局", "office_director"))
    page = client.get("/dashboard/bulletin?jurisdiction=weixi").get_data(as_text=True)
    assert "10.0 × 平均逾期天数" in page and 'id="bulletin-overdue"' in page
    scores = dict(re.findall(r'data-unit="(\d+)">.*?<td data-score>([^<]+)<', page, re.S))
    assert scores[str(police)] == "100.0"  # on time, never late
    late = [v for k, v in scores.items() if k != str(police)]
    # Open and 7 days late, nothing completed: 100 × 0 − 10 × 7 → 0.
    assert len(late) == n - 1 and set(late) == {"0.0"}
    data = client.get("/dashboard/export.csv?jurisdiction=weixi&table=scores").data
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert table[0][-1] == "得分" and {r[0]: r[-1] for r in table[1:]}["县公安局"] == "100.0"
    head = app.test_client()
    sign_in(head, make_person("police-head", "县公安局", "head"))
    assert head.get("/dashboard/bulletin").status_code == 403


def test_indicators_target_against_actual(app, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    from engine.models import HumanTask, TaskState

    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    sign_in(client, make_person("director", "县卫生健康局", "office_director"))
    page = client.get("/dashboard?jurisdiction=weixi&year=2025").get_data(as_text=True)
    assert 'data-indicator="childcare_places"' in page and "656.0" in page
    with seeded() as s:
        from engine.models import Indicator

        indicator_id = s.scalars(
            select(Indicator.id).where(Indicator.code == "prenatal_screening")
        ).one()
    asked = client.post(
        f"/dashboard/indicators/{indicator_id}/request?jurisdiction=weixi", data={"year": "2025"}
    )
    assert asked.status_code == 302
    with seeded() as s:
        step = s.scalars(
            select(HumanTask).where(
                HumanTask.element_id == "report_indicator", HumanTask.state == TaskState.READY
            )
        ).one()
    act(seeded, step, FixedClock(utcnow()), value="76.5")
    with seeded() as s:
        check = s.scalars(
            select(HumanTask).where(
                HumanTask.element_id == "check_indicator", HumanTask.state == TaskState.READY
            )
        ).one()
    act(seeded, check, FixedClock(utcnow()), decision="close")
    page = client.get("/dashboard?jurisdiction=weixi&year=2025").get_data(as_text=True)
    row = page.split('data-indicator="prenatal_screening"')[1].split("</tr>")[0]
    assert "76.5" in row and "-3.5" in row and 'class="light red"' in row


def test_dates_not_typed_as_year_month_day_are_refused_not_guessed(
    app, seeded, make_person
) -> None:  # type: ignore[no-untyped-def]
    from engine.models import HumanTask, Indicator

    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    sign_in(client, make_person("director", "县卫生健康局", "office_director"))
    page = client.get("/dashboard?jurisdiction=weixi&since=20261101").get_data(as_text=True)
    assert "YYYY-MM-DD" in page  # the filter is said to be wrong, and left out
    with seeded() as s:
        indicator_id = s.scalars(
            select(Indicator.id).where(Indicator.code == "prenatal_screening")
        ).one()
    for typed in ("2026/12/01", "20261201", "2026-W49-1"):
        asked = client.post(
            f"/dashboard/indicators/{indicator_id}/request?jurisdiction=weixi",
            data={"year": "2025", "due": typed},
        )
        assert asked.status_code == 302
        shown = client.get(asked.headers["Location"]).get_data(as_text=True)
        assert "YYYY-MM-DD" in shown, typed
    with seeded() as s:  # no request went out with a date nobody typed
        assert (
            s.scalars(select(HumanTask).where(HumanTask.element_id == "report_indicator")).all()
            == []
        )
