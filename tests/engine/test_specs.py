"""Instance state is SpiffWorkflow's own serialization without the spec: the same document the
stock serializer writes, less the spec and subprocess specs (stored once per version)."""

from __future__ import annotations

import json

from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from sqlalchemy import select

from engine.models import Instance
from engine.routing import hand_out
from engine.specs import SERIALIZER, dump_state, load_state
from engine.workflow_cache import WORKFLOWS
from tests.helpers import act, open_steps

STOCK = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))


def test_state_is_the_stock_serialization_less_the_specs(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    for _ in range(3):  # acknowledgements and the plan: branches running, timers waiting
        with seeded() as s:
            step = open_steps(s, item.id)[0]
        act(seeded, step, clock)
    with seeded() as s:
        tree = s.scalars(select(Instance).where(Instance.root_id == item.id)).all()
        assert len(tree) > 1
        for instance in tree:
            workflow = WORKFLOWS._entries[instance.id].workflow
            stock = json.loads(STOCK.serialize_json(workflow))
            assert "spec" in stock and "subprocess_specs" in stock
            del stock["spec"], stock["subprocess_specs"]
            assert json.loads(SERIALIZER.serialize_json(workflow)) == stock
            # and it reads back to the same state
            specs = (workflow.spec, workflow.subprocess_specs)
            assert dump_state(load_state(instance.state, specs)) == instance.state
