"""A task list from an Excel sheet laid out like the seeds (序号, 工作任务, 责任单位): it imports
exactly what the data file does, and a bad sheet names the row and imports nothing."""

from __future__ import annotations

import tomllib

import pytest
from openpyxl import Workbook
from sqlalchemy import select

from engine.errors import ImportErrors
from engine.excel_import import import_workbook, parse_responsibility
from engine.models import Plan
from engine.tasklists import get_plan
from tests.conftest import DATA
from tests.test_cli import duban  # noqa: F401 (the CLI fixture)

SUFFIX = {"lead": "牵头", "support": "配合", "implement": "落实"}


def _cell(task: dict) -> str:
    return ";".join(
        "、".join(task[role]) + SUFFIX[role]
        for role in ("lead", "support", "implement")
        if task.get(role)
    )


def _sheet(path, rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    book = Workbook()
    sheet = book.active
    sheet.append(["重点任务分工清单"])
    sheet.append(["序号", "工作任务", "责任单位"])
    for row in rows:
        sheet.append(list(row))
    book.save(path)


def test_the_responsibility_cell_is_split_by_role() -> None:
    roles, problems = parse_responsibility(
        "县卫生健康局、县政务服务\n管理局牵头;县公安局、县财政局配合;各乡(镇)党委、政府落实"
    )
    assert problems == []
    assert roles == {
        "lead": ["县卫生健康局", "县政务服务管理局"],
        "support": ["县公安局", "县财政局"],
        "implement": ["各乡(镇)党委、政府"],
    }
    assert parse_responsibility("各乡(镇)党委、政府配合落实")[0]["implement"] == [
        "各乡(镇)党委、政府"
    ]
    assert parse_responsibility("县财政局支持")[1] == [
        "'县财政局支持' ends with none of 牵头, 配合, 落实"
    ]


def test_the_weixi_list_from_excel_matches_the_data_file(seeded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = tomllib.loads((DATA / "tasklists" / "weixi-2023-15.toml").read_text())
    rows = [(t["number"], t["text"], _cell(t)) for t in doc["tasks"] if not t.get("office_leads")]
    path = tmp_path / "list.xlsx"
    _sheet(path, rows)
    seen: list[tuple[int, int]] = []
    with seeded.begin() as s:
        result = import_workbook(
            s,
            path,
            "weixi-excel",
            "维西县(Excel)",
            "weixi",
            progress=lambda d, t: seen.append((d, t)),
        )
    assert result.tasks == len(rows) and seen[-1] == (len(rows), len(rows))
    with seeded() as s:
        from_file = {t.number: t for t in get_plan(s, "weixi-2023-15").tasks}
        for task in get_plan(s, "weixi-excel").tasks:
            expected = from_file[task.number]
            assert task.text == expected.text
            assert [(u.role, u.unit_id) for u in task.units] == [
                (u.role, u.unit_id) for u in expected.units
            ]
    with seeded.begin() as s:  # again: unchanged
        assert not import_workbook(s, path, "weixi-excel", "维西县(Excel)", "weixi").changed


def test_a_bad_sheet_names_every_row_and_imports_nothing(seeded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.xlsx"
    _sheet(
        path,
        [
            (1, "任务一", "县卫生健康局牵头"),
            ("二", "任务二", "县卫生健康局牵头"),
            (3, "任务三", "县卫生健康局负责，县财政局帮助"),
            (4, "任务四", "县火星局牵头"),
            (1, "任务五", "县卫生健康局牵头"),
        ],
    )
    with pytest.raises(ImportErrors) as err, seeded.begin() as s:
        import_workbook(s, path, "bad", "坏表", "weixi")
    text = str(err.value)
    assert "row 4: 序号 '二' is not a number" in text
    assert "row 5 (task 3): 责任单位 '县财政局帮助' ends with none of 牵头, 配合, 落实" in text
    with seeded() as s:
        assert s.scalar(select(Plan).where(Plan.key == "bad")) is None
    path2 = tmp_path / "units.xlsx"
    _sheet(path2, [(1, "任务一", "县火星局牵头"), (1, "任务二", "县卫生健康局牵头")])
    with pytest.raises(ImportErrors) as err, seeded.begin() as s:
        import_workbook(s, path2, "bad", "坏表", "weixi")
    assert "unknown unit '县火星局'" in str(err.value) and "duplicate number 1" in str(err.value)
    not_excel = tmp_path / "x.xlsx"
    not_excel.write_text("hello")
    with pytest.raises(ImportErrors, match="not an Excel workbook"), seeded.begin() as s:
        import_workbook(s, not_excel, "bad", "坏表", "weixi")


def test_the_command_line_import_with_progress(duban, sessions, tmp_path) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    assert duban("seed").exit_code == 0
    path = tmp_path / "list.xlsx"
    _sheet(path, [(1, "开展托育服务调查", "县卫生健康局牵头;县财政局配合;各乡(镇)党委、政府落实")])
    out = duban(
        "import-excel",
        str(path),
        "--key",
        "weixi-2026-1",
        "--title",
        "试点清单",
        "--jurisdiction",
        "weixi",
    )
    assert out.exit_code == 0, out.output
    assert "weixi-2026-1, 1 tasks, imported" in out.output
    with sessions() as s:
        (task,) = get_plan(s, "weixi-2026-1").tasks
        assert len(task.units) == 12  # a lead, a supporting unit, ten townships
