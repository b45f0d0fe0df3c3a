"""An item with more implementing units than a step starts at once (SPAWN_INLINE): its branches
start after the step's commit, a batch per transaction, and the item runs to its end."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from duban.scheduler import Jobs
from engine.clock import FixedClock
from engine.deploy import deploy_directory
from engine.directory import load_directory
from engine.models import DeferredStart, Instance, InstanceStatus
from engine.routing import hand_out
from engine.runtime import (
    SPAWN_BATCH,
    SPAWN_INLINE,
    Actor,
    cancel_instance,
    complete_task,
    start_deferred,
)
from engine.tasklists import import_document
from tests.conftest import PROCESSES
from tests.helpers import act, answer, drive, open_steps

COUNTIES = SPAWN_INLINE + SPAWN_BATCH + 7  # more than a step starts, and more than one batch


def _directory() -> str:
    counties = range(1, COUNTIES + 1)
    return "\n".join(
        [
            '[[jurisdictions]]\ncode = "wide"\nname = "广州"\nlevel = "prefecture"\n',
            *(
                f'[[jurisdictions]]\ncode = "wide.c{i}"\nname = "广{i}县"\nlevel = "county"\n'
                'parent = "wide"\n'
                for i in counties
            ),
            '[[units]]\nname = "广州督查室"\njurisdiction = "wide"\nkind = "party"\n',
            '[[units]]\nname = "广州卫健委"\njurisdiction = "wide"\nkind = "department"\n',
            *(
                f'[[units]]\nname = "广{i}县人民政府"\njurisdiction = "wide.c{i}"\n'
                'kind = "local_government"\n'
                for i in counties
            ),
            '[[offices]]\njurisdiction = "wide"\nunit = "广州督查室"\n',
        ]
    )


@pytest.fixture
def wide(sessions, clock, tmp_path: Path):
    path = tmp_path / "wide.toml"
    path.write_text(_directory(), encoding="utf-8")
    task = {
        "number": 1,
        "text": "各县落实托育服务",
        "lead": ["广州卫健委"],
        "support": [],
        "implement": [f"广{i}县人民政府" for i in range(1, COUNTIES + 1)],
    }
    plan = {"key": "wide-1", "title": "宽", "jurisdiction": "wide"}
    with sessions.begin() as session:
        load_directory(session, path, clock())
        deploy_directory(session, PROCESSES, "test")
        import_document(session, {"plan": plan, "tasks": [task]}, "test")
    return sessions


def _waiting(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(DeferredStart)) or 0


def _branches(sessions, item_id: int) -> int:
    with sessions() as session:
        query = select(func.count()).where(Instance.root_id == item_id, Instance.id != item_id)
        return session.scalar(query.select_from(Instance)) or 0


def test_a_wide_hand_out_starts_its_branches_after_the_commit_in_batches(wide, clock):
    with wide.begin() as session:
        (item,) = hand_out(session, "wide-1", None, clock())
        item_id = item.id
    assert _branches(wide, item_id) == 0 and _waiting(wide) == 1
    with wide() as session:
        assert open_steps(session, item_id) == []  # nothing half-started
    started = start_deferred(wide, clock(), batch=SPAWN_BATCH)
    assert started == COUNTIES + 1  # every county and the lead acknowledge receipt
    assert _branches(wide, item_id) == COUNTIES + 1 and _waiting(wide) == 0
    assert start_deferred(wide, clock()) == 0  # nothing is started twice
    with wide() as session:
        units = {s.unit_id for s in open_steps(session, item_id)}
    assert len(units) == COUNTIES + 1


def test_the_plan_step_is_short_and_the_item_runs_to_its_end(wide, clock):
    with wide.begin() as session:
        (item,) = hand_out(session, "wide-1", None, clock())
        item_id = item.id
    start_deferred(wide, clock())
    with wide() as session:
        acks = open_steps(session, item_id)
    for step in acks:
        act(wide, step, clock)
    with wide() as session:
        (plan,) = open_steps(session, item_id)
    assert plan.form == "plan"
    before = _branches(wide, item_id)
    with wide.begin() as session:  # reaches COUNTIES report branches: none starts in this step
        complete_task(session, plan.id, Actor(plan.position_id), answer("plan", clock), clock())
    assert _branches(wide, item_id) == before and _waiting(wide) == 1
    # The scheduler's job starts them (what `duban serve` and `duban scheduler` run).
    Jobs(wide, clock=clock).branches()
    assert _branches(wide, item_id) == before + COUNTIES and _waiting(wide) == 0
    drive(wide, clock, item_id)
    with wide() as session:
        root = session.get(Instance, item_id)
        assert root is not None and root.status == InstanceStatus.COMPLETED
        running = select(func.count()).where(
            Instance.root_id == item_id, Instance.status == InstanceStatus.RUNNING
        )
        assert session.scalar(running.select_from(Instance)) == 0


def test_a_withdrawn_item_starts_nothing_more(wide, clock: FixedClock):
    with wide.begin() as session:
        (item,) = hand_out(session, "wide-1", None, clock())
        item_id = item.id
    with wide.begin() as session:
        cancel_instance(session, item_id, Actor(position_id=None, label="test"), clock(), "撤回")
    assert start_deferred(wide, clock()) == 0
    assert _branches(wide, item_id) == 0 and _waiting(wide) == 0
