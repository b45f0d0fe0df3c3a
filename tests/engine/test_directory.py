from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.directory import find_unit, hand_over, holders, load_directory, position_of
from engine.errors import ImportErrors, NotFound, PermissionDenied
from engine.models import (
    HumanTask,
    Jurisdiction,
    Level,
    Person,
    Position,
    PositionKind,
    Unit,
    UnitKind,
)
from engine.routing import hand_out
from engine.runtime import Actor, complete_task, may_act
from tests.helpers import answer, open_steps


def test_seed_directories_build_the_jurisdiction_tree(seeded):
    with seeded() as s:
        weixi = s.scalar(select(Jurisdiction).where(Jurisdiction.code == "weixi"))
        townships = s.scalars(select(Jurisdiction).where(Jurisdiction.parent_id == weixi.id))
        assert sorted(j.name for j in townships) == sorted(
            [
                "保和镇",
                "叶枝镇",
                "塔城镇",
                "永春乡",
                "攀天阁乡",
                "白济汛乡",
                "康普乡",
                "巴迪乡",
                "中路乡",
                "维登乡",
            ]
        )
        assert weixi.parent.level == Level.PREFECTURE
        dehong = s.scalar(select(Jurisdiction).where(Jurisdiction.code == "dehong"))
        counties = list(s.scalars(select(Jurisdiction).where(Jurisdiction.parent_id == dehong.id)))
        assert sorted(j.name for j in counties) == sorted(
            ["芒市", "瑞丽市", "梁河县", "盈江县", "陇川县"]
        )
        assert {j.level for j in counties} == {Level.COUNTY}
        # One local-government unit per township and per county or city.
        local = s.scalar(
            select(func.count()).select_from(Unit).where(Unit.kind == UnitKind.LOCAL_GOVERNMENT)
        )
        assert local == 15


def test_short_forms_resolve_to_the_full_unit(seeded):
    with seeded() as s:
        assert find_unit(s, "县教体局", "weixi").name == "县教育体育局"
        assert find_unit(s, "县教育体育局", "weixi").name == "县教育体育局"
        with pytest.raises(NotFound, match="no unit named '县不存在局'"):
            find_unit(s, "县不存在局")


def test_seats_come_from_the_roster(seeded):
    with seeded() as s:
        health = find_unit(s, "县卫生健康局", "weixi")
        director = position_of(s, health, "office_director")
        assert [p.name for p in holders(s, director.id)] == ["张键伟"]
        government = find_unit(s, "县人民政府", "weixi")
        convener = position_of(s, government, PositionKind.CONVENER)
        assert [p.name for p in holders(s, convener.id)] == ["李春梅"]
        # Every unit has a liaison seat, vacant until someone is given it.
        assert position_of(s, find_unit(s, "县统计局"), "liaison").title == "联络员"


def test_loading_a_directory_twice_changes_nothing(seeded, clock):
    with seeded.begin() as s:
        counts = load_directory(s, Path("data/directory/weixi.toml"), clock())
    assert counts == {
        "jurisdictions": 0,
        "units": 0,
        "positions": 0,
        "people": 0,
        "assistance settings": 0,
        "settings": 0,
        "indicators": 0,
    }


def test_open_work_follows_the_position_to_the_successor(seeded, clock):
    with seeded.begin() as s:
        hand_out(s, "weixi-2023-15", [7], clock())
        unit = find_unit(s, "县农业农村局", "weixi")
        liaison = position_of(s, unit, "liaison")
        old, new = Person(name="甲"), Person(name="乙")
        s.add_all([old, new])
        hand_over(s, liaison, old, clock())
    with seeded.begin() as s:
        step = next(t for t in open_steps(s) if t.unit_id == unit.id)
        hand_over(s, s.get(Position, liaison.id), s.get(Person, new.id), clock())
    with seeded.begin() as s:
        step = s.get(HumanTask, step.id)
        assert may_act(s, Actor(liaison.id, new.id), step)
        assert not may_act(s, Actor(liaison.id, old.id), step)
        with pytest.raises(PermissionDenied):
            complete_task(
                s, step.id, Actor(liaison.id, old.id), answer("acknowledge", clock), clock()
            )
    with seeded.begin() as s:
        done = complete_task(
            s, step.id, Actor(liaison.id, new.id), answer("acknowledge", clock), clock()
        )
        assert done.completed_by_id == new.id


def test_a_bad_directory_file_reports_every_problem_and_loads_nothing(sessions, clock, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        """
[[jurisdictions]]
code = "x"
name = "某县"
level = "city-state"
parent = "nowhere"

[[units]]
name = "县某局"
jurisdiction = "y"
kind = "department"

[[people]]
name = "某人"
unit = "县无局"
position = "emperor"

[[settings]]
jurisdiction = "x"
yearly_meeting_by = "02-30"
weekly_tea = "yes"

[[assistance]]
jurisdiction = "x"
health = "县无局"
civil_affairs = "县某局"
rural_revitalisation = "县某局"
medical_insurance = "县某局"
reviewer = "县某局"
""",
        encoding="utf-8",
    )
    with pytest.raises(ImportErrors) as err, sessions.begin() as s:
        load_directory(s, bad, clock())
    text = str(err.value)
    for expected in [
        "unknown level 'city-state'",
        "parent 'nowhere'",
        "unknown jurisdiction 'y'",
        "unknown unit '县无局'",
        "unknown position 'emperor'",
        "'yearly_meeting_by' must be a day of the year as MM-DD, not '02-30'",
        "unknown setting 'weekly_tea'",
        "'health' names unknown unit '县无局'",
    ]:
        assert expected in text
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Jurisdiction)) == 0
