"""A step runs on the workflow the previous step of its instance left in memory, when the stored
state is still exactly what that step saved; otherwise on the stored state. Nothing a
rolled-back step did in memory survives it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

import engine.runtime as runtime
from engine.models import HistoryEntry, HumanTask, Instance, InstanceStatus, TaskState
from engine.routing import hand_out
from engine.specs import dump_state, load_state
from engine.workflow_cache import WORKFLOWS, Saved, WorkflowCache
from tests.helpers import act, answer, completed_count, drive, open_steps


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts how often a workflow is rebuilt from stored state."""
    calls: list[int] = []

    def counted(blob: bytes, specs: Any) -> Any:
        calls.append(1)
        return load_state(blob, specs)

    monkeypatch.setattr(runtime, "load_state", counted)
    return calls


def _item(seeded, clock, number: int = 7) -> Instance:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (instance,) = hand_out(s, "weixi-2023-15", [number], clock())
    return instance


def _next(seeded, item_id: int) -> HumanTask:  # type: ignore[no-untyped-def]
    with seeded() as s:
        return open_steps(s, item_id)[0]


# Weixi task 7: each lead unit acknowledges in a branch instance of its own; the item's own
# instance then asks for the plan, a branch for the contribution, the consolidation, the review.


def test_an_item_runs_through_without_rebuilding_a_workflow(seeded, clock, loads) -> None:  # type: ignore[no-untyped-def]
    item = _item(seeded, clock)
    assert drive(seeded, clock, item.id) == 6
    assert loads == []  # every step ran on the workflow its instance's last save left
    with seeded() as s:
        stored = s.get(Instance, item.id)
        assert stored is not None and stored.status == InstanceStatus.COMPLETED
        # What is in memory is what is stored, for the item's instance and every branch.
        tree = s.scalars(select(Instance).where(Instance.root_id == item.id)).all()
        assert len(tree) == 4
        for instance in tree:
            assert dump_state(WORKFLOWS._entries[instance.id].workflow) == instance.state


def test_an_item_runs_to_the_same_end_with_and_without_the_cache(  # type: ignore[no-untyped-def]
    seeded, clock, monkeypatch
) -> None:
    def run(number: int) -> list[tuple[str, str | None, int | None]]:
        item = _item(seeded, clock, number)
        drive(seeded, clock, item.id)
        with seeded() as s:
            root = s.get(Instance, item.id)
            assert root is not None and root.status == InstanceStatus.COMPLETED
            tree = select(Instance.id).where(Instance.root_id == item.id)
            lines = s.scalars(
                select(HistoryEntry)
                .where(HistoryEntry.instance_id.in_(tree))
                .order_by(HistoryEntry.id)
            )
            return [
                (line.action, (line.data or {}).get("element"), line.actor_position_id)
                for line in lines
            ]

    # Weixi tasks 10 and 31 have the same eleven units in the same roles.
    cached = run(10)
    monkeypatch.setattr(WORKFLOWS, "size", 0)  # keeps nothing: every step rebuilds
    WORKFLOWS.clear()
    assert run(31) == cached and len(cached) > 40


def test_a_rolled_back_step_leaves_nothing_behind_in_memory(seeded, clock, loads) -> None:  # type: ignore[no-untyped-def]
    item = _item(seeded, clock)
    step = _next(seeded, item.id)
    with seeded() as s:
        revision = s.get(Instance, step.instance_id).revision
    with pytest.raises(RuntimeError, match="after the step"), seeded.begin() as s:
        actor = runtime.Actor(step.position_id)
        runtime.complete_task(s, step.id, actor, answer(step.form, clock), clock())
        raise RuntimeError("after the step, before the commit")
    assert step.instance_id not in WORKFLOWS._entries  # the run that never happened is gone
    act(seeded, step, clock)
    assert loads == [1]  # rebuilt from what is stored
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.COMPLETED
        assert s.get(Instance, step.instance_id).revision == revision + 1
        assert completed_count(s) == 1


def test_a_workflow_whose_state_was_replaced_elsewhere_is_not_used(seeded, clock, loads) -> None:  # type: ignore[no-untyped-def]
    item = _item(seeded, clock)
    for _ in range(3):  # both acknowledgements, the plan
        act(seeded, _next(seeded, item.id), clock)
    stale = WORKFLOWS._entries[item.id]
    WORKFLOWS.clear()  # another worker completes the contribution, from the stored states
    act(seeded, _next(seeded, item.id), clock)
    WORKFLOWS.put(item.id, stale)  # this worker still remembers the item as after the plan
    before = len(loads)
    consolidate = _next(seeded, item.id)
    assert consolidate.element_id == "consolidate" and consolidate.instance_id == item.id
    act(seeded, consolidate, clock)
    assert len(loads) == before + 1  # the stored state is newer: rebuilt, the stale one unused
    review = _next(seeded, item.id)
    assert review.element_id == "review"
    act(seeded, review, clock)
    with seeded() as s:
        assert s.get(Instance, item.id).status == InstanceStatus.COMPLETED
        assert completed_count(s) == 6


def test_the_cache_keeps_the_most_recently_saved_and_checks_state_and_spec() -> None:
    cache = WorkflowCache(size=2)
    specs, other_specs = object(), object()
    for instance_id in (1, 2, 3):
        cache.put(instance_id, Saved(workflow=f"w{instance_id}", state=b"s", specs=specs))  # type: ignore[arg-type]
    assert len(cache) == 2 and cache.take(1, b"s", specs) is None  # the oldest went
    assert cache.take(2, b"other", specs) is None  # a different state: not used ...
    assert cache.take(2, b"s", specs) is None  # ... and dropped
    assert cache.take(3, b"s", other_specs) is None  # another spec (another database)
    cache.put(4, Saved(workflow="w4", state=b"s", specs=specs))  # type: ignore[arg-type]
    assert cache.take(4, b"s", specs) == "w4"
    assert cache.take(4, b"s", specs) is None  # taken: one user at a time
