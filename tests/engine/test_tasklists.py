from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.errors import ImportErrors
from engine.models import Plan, PlanTask, Role
from engine.tasklists import import_plan
from tests.conftest import DATA


def _task(s, key, number):
    return s.scalar(select(PlanTask).join(Plan).where(Plan.key == key, PlanTask.number == number))


def test_both_seed_lists_are_imported_in_full(seeded):
    with seeded() as s:
        weixi = s.scalar(select(Plan).where(Plan.key == "weixi-2023-15"))
        dehong = s.scalar(select(Plan).where(Plan.key == "dehong-2023"))
        assert [t.number for t in weixi.tasks] == list(range(1, 32))
        assert [t.number for t in dehong.tasks] == list(range(1, 30))
        assert weixi.document_number == "维发〔2023〕15号"
        assert str(weixi.issued_on) == "2023-06-28"
        assert weixi.jurisdiction.code == "weixi"


def test_units_keep_their_roles_and_order(seeded):
    with seeded() as s:
        first = _task(s, "weixi-2023-15", 1)
        assert [u.name for u in first.units_in(Role.LEAD)] == [
            "县卫生健康局",
            "县发展和改革局",
            "县教育体育局",
        ]
        assert "县司法局" in [u.name for u in first.units_in(Role.SUPPORT)]


def test_collective_implementers_expand_to_every_township_and_county(seeded):
    with seeded() as s:
        weixi = _task(s, "weixi-2023-15", 1).units_in(Role.IMPLEMENT)
        assert len(weixi) == 10 and "保和镇党委、政府" in [u.name for u in weixi]
        dehong = _task(s, "dehong-2023", 1).units_in(Role.IMPLEMENT)
        assert sorted(u.name for u in dehong) == sorted(
            f"{c}党委和政府" for c in ["芒市", "瑞丽市", "梁河县", "盈江县", "陇川县"]
        )


def test_member_units_expand_without_repeating_the_lead(seeded):
    with seeded() as s:
        task = _task(s, "dehong-2023", 13)
        leads = [u.unit_id for u in task.units if u.role == Role.LEAD]
        supports = [u.unit_id for u in task.units if u.role == Role.SUPPORT]
        assert len(supports) > 10 and not set(leads) & set(supports)


def test_short_forms_in_the_list_resolve(seeded):
    with seeded() as s:
        task = _task(s, "weixi-2023-15", 6)  # names 县教体局
        assert "县教育体育局" in [u.name for u in task.units_in(Role.SUPPORT)]


def test_importing_the_same_file_twice_changes_nothing(seeded):
    with seeded.begin() as s:
        before = s.scalar(select(func.count()).select_from(PlanTask))
        result = import_plan(s, DATA / "tasklists" / "weixi-2023-15.toml")
    assert not result.changed
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(PlanTask)) == before


BAD_LIST = """
[plan]
key = "weixi-bad"
title = "测试清单"
jurisdiction = "weixi"

[[tasks]]
number = 1
text = "第一项任务"
lead = ["县卫生健康局"]
support = ["县不存在局"]
implement = []

[[tasks]]
number = 2
text = "第二项任务没有牵头单位"
lead = []
support = ["县财政局"]
implement = []

[[tasks]]
number = 1
text = "重复的序号"
lead = ["县财政局"]
support = []
implement = []
"""


def test_a_bad_list_names_every_bad_row_and_imports_nothing(seeded, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_LIST, encoding="utf-8")
    with pytest.raises(ImportErrors) as err, seeded.begin() as s:
        import_plan(s, path)
    problems = err.value.problems
    assert any(
        "task 1: 第一项任务" in p and "unknown unit '县不存在局' in support" in p for p in problems
    )
    assert any("task 2: 第二项任务没有牵头单位" in p and "no lead unit" in p for p in problems)
    assert any("row 3" in p and "duplicate number 1 (also row 1)" in p for p in problems)
    with seeded() as s:
        assert s.scalar(select(Plan).where(Plan.key == "weixi-bad")) is None


def test_broken_toml_is_reported_with_its_line(sessions, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[plan]\nkey = "x\n', encoding="utf-8")
    with pytest.raises(ImportErrors, match="line 2"), sessions.begin() as s:
        import_plan(s, path)


def test_a_changed_list_cannot_replace_one_already_handed_out(seeded, clock, tmp_path):
    from engine.routing import hand_out

    with seeded.begin() as s:
        hand_out(s, "weixi-2023-15", [2], clock())
    changed = (DATA / "tasklists" / "weixi-2023-15.toml").read_text(encoding="utf-8")
    changed = changed.replace("积极有序实施三孩生育政策", "积极实施三孩生育政策")
    path = tmp_path / "changed.toml"
    path.write_text(changed, encoding="utf-8")
    with pytest.raises(ImportErrors, match="already handed out"), seeded.begin() as s:
        import_plan(s, Path(path))
