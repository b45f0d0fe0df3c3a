"""The diagram on a step's page: a routed item drawn from its BPMN, highlighted by its state."""

from __future__ import annotations

import re
from datetime import timedelta

from lxml import etree
from sqlalchemy import select

from engine.accounts import create_account
from engine.directory import hand_over
from engine.models import Instance, Person, Position
from engine.routing import hand_out
from tests.conftest import PROCESSES
from tests.helpers import act, open_steps
from tests.web.conftest import PASSWORD, Someone, sign_in
from web.diagram import (
    Layout,
    Progress,
    State,
    item_diagram,
    parse_layout,
    process_diagram,
    render_svg,
    version_layout,
    wrap,
)

SVG = "http://www.w3.org/2000/svg"
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
FLOW_NODES = (
    "boundaryEvent",
    "startEvent",
    "endEvent",
    "userTask",
    "manualTask",
    "parallelGateway",
    "exclusiveGateway",
    "scriptTask",
)


def _flow_node_ids(name: str) -> set[str]:
    tree = etree.parse(str(PROCESSES / name))
    return {
        e.get("id")
        for tag in FLOW_NODES
        for e in tree.iterfind(f"{{{BPMN}}}process/{{{BPMN}}}{tag}")
    }


def _parse(svg: str) -> etree._Element:
    root = etree.fromstring(svg.encode())
    assert root.tag == f"{{{SVG}}}svg"
    return root


def _states(root: etree._Element) -> dict[str, str]:
    return {
        g.get("data-element"): g.get("data-state")
        for g in root.iter(f"{{{SVG}}}g")
        if g.get("data-element")
    }


def _flows(root: etree._Element) -> dict[str, str]:
    return {
        g.get("data-flow"): g.get("data-state")
        for g in root.iter(f"{{{SVG}}}g")
        if g.get("data-flow")
    }


def _count(root: etree._Element, element: str) -> str | None:
    (group,) = root.xpath("//s:g[@data-element=$e]", namespaces={"s": SVG}, e=element)
    found = group.xpath("s:text[@class='dg-count']/text()", namespaces={"s": SVG})
    return found[0] if found else None


def test_item_diagram_shows_where_the_item_stands(seeded, clock):
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
        item_id = item.id
    with seeded() as s:
        item = s.get(Instance, item_id)
        before = _parse(item_diagram(s, item, clock()))
        branch = s.scalars(select(Instance).where(Instance.parent_id == item_id)).first()
        assert branch is not None
        one_unit = _parse(process_diagram(s, branch, clock()))
        of_branch = _parse(item_diagram(s, branch, clock()))
        late_acks = _parse(process_diagram(s, item, clock() + timedelta(days=60)))
        acks = [t for t in open_steps(s, item_id) if t.element_id == "acknowledge"]
    assert _states(before)["acknowledgements"] == State.ACTIVE
    assert _count(before, "acknowledgements") == f"0/{len(acks)}"
    assert _states(late_acks)["acknowledgements"] == State.OVERDUE  # a branch's step is late
    assert of_branch.get("data-process") == "task_routing"
    states = _states(one_unit)
    timers = {k: v for k, v in states.items() if k.startswith("acknowledge_")}
    assert {k: v for k, v in states.items() if k not in timers} == {
        "received": "done",
        "acknowledge": "active",
        "acknowledged": "idle",
    }
    # The step's due-date timers wait on it; what they lead to has not happened.
    assert {k: v for k, v in timers.items() if not k.endswith("_done")} == {
        f"acknowledge_{kind}": "active" for kind in ("reminder", "overdue", "urge", "escalate")
    }
    assert {v for k, v in timers.items() if k.endswith("_done")} == {"idle"}

    for step in acks:
        act(seeded, step, clock)
    with seeded() as s:
        item = s.get(Instance, item_id)
        svg = item_diagram(s, item, clock())
        assert version_layout(s, item.process_version_id) is version_layout(
            s, item.process_version_id
        )
        clock.advance(timedelta(days=60))  # past the plan's due date
        late = _parse(process_diagram(s, item, clock()))

    root = _parse(svg)
    states = _states(root)
    assert set(states) == _flow_node_ids("task_routing.bpmn")
    assert states["handed_out"] == states["acknowledgements"] == State.DONE
    assert states["set_plan"] == State.ACTIVE
    assert states["review"] == states["closed"] == State.IDLE
    assert _count(root, "acknowledgements") == f"{len(acks)}/{len(acks)}"
    flows = _flows(root)
    assert flows["to_acknowledge"] == flows["to_set_plan"] == "taken"
    assert flows["to_split"] == flows["sent_back"] == "idle"
    assert root.xpath("//s:g[@class='dg-legend']", namespaces={"s": SVG})
    assert _states(late)["set_plan"] == State.OVERDUE


def test_the_step_page_embeds_the_diagram(seeded, clock, client):
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
        step = open_steps(s, item.id)[0]
        person = Person(name="签收人")
        s.add(person)
        s.flush()
        hand_over(s, s.get(Position, step.position_id), person, clock())
        create_account(s, person, "signer", PASSWORD)
        step_id, person_id, position_id = step.id, person.id, step.position_id
    sign_in(client, Someone("signer", person_id, position_id, ""))
    page = client.get(f"/tasks/{step_id}").get_data(as_text=True)
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="dg"' in page
    # The page draws at the real time, the steps are due by the test clock's: either will do.
    assert re.search(r'data-element="acknowledgements" data-state="(active|overdue)"', page)


MINI = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
  <bpmn:process id="mini" name="a &lt;b&gt; &amp; &quot;c&quot;" isExecutable="true">
    <bpmn:startEvent id="go" name="&lt;img src=x onerror=alert(1)&gt;" />
    <bpmn:userTask id="evil" name="&lt;script&gt;alert(1)&lt;/script&gt;" />
    <bpmn:exclusiveGateway id="pick" default="again" />
    <bpmn:endEvent id="stop" />
    <bpmn:sequenceFlow id="f1" sourceRef="go" targetRef="evil" />
    <bpmn:sequenceFlow id="f2" sourceRef="evil" targetRef="pick" />
    <bpmn:sequenceFlow id="f3" name="&lt;/text&gt;&lt;b&gt;" sourceRef="pick" targetRef="stop" />
    <bpmn:sequenceFlow id="again" sourceRef="pick" targetRef="evil" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_labels_are_escaped_and_sources_without_di_get_a_layout():
    layout = parse_layout(MINI, "mini")
    assert isinstance(layout, Layout)
    assert [n.id for n in layout.nodes] == ["go", "evil", "pick", "stop"]
    columns = [n.box.cx for n in layout.nodes]
    assert columns == sorted(columns)  # left to right, the loop back ignored
    svg = render_svg(layout, Progress(states={"go": State.DONE, "evil": State.ACTIVE}))
    assert "<script" not in svg and "<img" not in svg and "<b>" not in svg
    root = _parse(svg)
    text = "".join(root.itertext())
    assert "<script>alert(1)</script>" in text.replace("\n", "")  # as text, split over lines
    assert "<img src=x onerror=alert(1)>" in text
    assert root.find(f"{{{SVG}}}title").text == 'a <b> & "c"'
    assert _states(root) == {"go": "done", "evil": "active", "pick": "idle", "stop": "idle"}
    assert [len(f.points) >= 2 for f in layout.flows] == [True] * 4


def test_names_wrap_by_character_count():
    assert wrap("制定工作计划和时限", 7.3, 4) == ["制定工作计", "划和时限"]
    assert wrap("汇总反馈", 7.3, 4) == ["汇总反馈"]
    assert wrap("一二三四五六七八九十" * 3, 7.3, 2) == ["一二三四五六七", "八九十一二三…"]
