import json
import threading
import zlib

import pytest

from engine.errors import Conflict, FormError, NotFound, PermissionDenied
from engine.models import HumanTask, Instance, TaskState
from engine.routing import hand_out
from engine.runtime import Actor, claim_task, complete_task, history
from engine.specs import SERIALIZER_VERSION
from tests.helpers import act, answer, completed_count, open_steps


@pytest.fixture
def item(seeded, clock):
    """Weixi task 7: two lead units, nothing else."""
    with seeded.begin() as s:
        (instance,) = hand_out(s, "weixi-2023-15", [7], clock())
    return instance


def test_state_is_stored_without_the_spec_and_with_its_serializer_version(seeded, item):
    with seeded() as s:
        inst = s.get(Instance, item.id)
        state = json.loads(zlib.decompress(inst.state))
        assert "spec" not in state and "subprocess_specs" not in state
        assert inst.serializer_version == SERIALIZER_VERSION == state["serializer_version"]
        assert len(inst.state) < 8_000


def test_steps_are_mirrored_with_unit_position_and_due_date(seeded, item):
    with seeded() as s:
        steps = open_steps(s, item.id)
        assert sorted(t.unit.name for t in steps) == ["县农业农村局", "县卫生健康局"]
        assert {(t.element_id, t.form, t.position.kind.value) for t in steps} == {
            ("acknowledge", "acknowledge", "liaison")
        }
        # Handed out on 2026-11-25 (Beijing time): three days to acknowledge, end of day.
        assert {str(t.due_at)[:19] for t in steps} == {"2026-11-28 15:59:59"}


def test_completing_a_step_twice_is_a_conflict_and_changes_nothing(seeded, item, clock):
    with seeded() as s:
        step = open_steps(s, item.id)[0]
    act(seeded, step, clock)
    with seeded() as s:
        revision = s.get(Instance, item.id).revision
    with pytest.raises(Conflict, match="already completed"):
        act(seeded, step, clock)
    with seeded() as s:
        assert s.get(Instance, item.id).revision == revision
        assert completed_count(s) == 1


def test_another_units_position_cannot_act(seeded, item, clock):
    with seeded() as s:
        step, other = open_steps(s, item.id)
    with pytest.raises(PermissionDenied, match="belongs to"), seeded.begin() as s:
        complete_task(s, step.id, Actor(other.position_id), {}, clock())
    with pytest.raises(NotFound), seeded.begin() as s:
        complete_task(s, 999_999, Actor(step.position_id), {}, clock())


def test_a_rejected_form_leaves_the_instance_untouched(seeded, item, clock):
    with seeded() as s:
        steps = open_steps(s, item.id)
    for step in steps:
        act(seeded, step, clock)
    with seeded() as s:
        (plan_step,) = open_steps(s, item.id)
        before = (s.get(Instance, item.id).revision, s.get(Instance, item.id).state)
    with pytest.raises(FormError) as err, seeded.begin() as s:
        complete_task(
            s,
            plan_step.id,
            Actor(plan_step.position_id),
            {
                "plan": "x",
                "support_due": "2026-02-30",
                "implement_due": "2020-01-01",
                "final_due": "",
            },
            clock(),
        )
    assert err.value.errors == {
        "support_due": "must be a date as YYYY-MM-DD",
        "implement_due": "must not be before today (2026-11-25)",
        "final_due": "is required",
    }
    with seeded() as s:
        inst = s.get(Instance, item.id)
        assert (inst.revision, inst.state) == before
        assert s.get(HumanTask, plan_step.id).state == TaskState.READY


def test_history_records_who_for_which_position_and_what(seeded, item, clock):
    with seeded() as s:
        step = open_steps(s, item.id)[0]
    with seeded.begin() as s:
        complete_task(
            s,
            step.id,
            Actor(step.position_id, label="联络员"),
            answer("acknowledge", clock, note="已签收"),
            clock(),
        )
    with seeded() as s:
        rows = history(s, item.id)
        # The item, then one branch per unit (each acknowledges on its own), then the step.
        assert [r.action for r in rows] == ["started", "started", "started", "completed"]
        assert rows[0].instance_id == item.id and rows[1].instance_id != item.id
        done = rows[-1]
        assert done.actor_position_id == step.position_id and done.actor_label == "联络员"
        assert done.data == {"element": "acknowledge", "note": "已签收"}
        assert done.at == clock()


def test_claiming_records_the_person_but_the_step_stays_with_the_position(seeded, item, clock):
    from engine.directory import hand_over
    from engine.models import Person, Position

    with seeded.begin() as s:
        step = open_steps(s, item.id)[0]
        person = Person(name="联络员甲")
        s.add(person)
        hand_over(s, s.get(Position, step.position_id), person, clock())
    with seeded.begin() as s:
        claimed = claim_task(s, step.id, Actor(step.position_id, person.id), clock())
        assert claimed.claimed_by_id == person.id and claimed.state == TaskState.READY


def test_parallel_branches_completed_at_the_same_moment_are_both_kept(seeded, item, clock):
    with seeded() as s:
        first, second = open_steps(s, item.id)
        revision = s.get(Instance, item.id).revision
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(step: HumanTask) -> None:
        try:
            barrier.wait()
            act(seeded, step, clock)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(step,)) for step in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with seeded() as s:
        # Both acknowledgements landed: the lead's planning step is now open.
        assert [t.element_id for t in open_steps(s, item.id)] == ["set_plan"]
        # The item moved on exactly once, when the last branch ended: nothing lost or repeated.
        assert s.get(Instance, item.id).revision == revision + 1


def test_racing_to_complete_the_same_step_lets_exactly_one_win(seeded, item, clock):
    with seeded() as s:
        step = open_steps(s, item.id)[0]
    barrier = threading.Barrier(5)
    outcomes: list[str] = []

    def run() -> None:
        barrier.wait()
        try:
            act(seeded, step, clock)
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 4 + ["ok"]
    with seeded() as s:
        assert completed_count(s) == 1
