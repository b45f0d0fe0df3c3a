"""Give every user task with a `due` property its four timer boundary events (engine.timing):
reminder before the due date, overdue at it, repeated reminders while overdue, escalation after
the grace period. Idempotent: a task that has them keeps them. Deployment refuses a process
whose timed steps lack any of them.

    .venv/bin/python scripts/add_due_timers.py processes/*.bpmn
"""

from __future__ import annotations

import sys
from pathlib import Path

from lxml import etree

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core"
DI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DDI = "http://www.omg.org/spec/DD/20100524/DI"
NS = {"bpmn": BPMN, "spiff": SPIFF, "bpmndi": DI, "dc": DC, "di": DDI}
# kind, name, timer element, expression (DUE is the task's due expression)
TIMERS = (
    ("reminder", "到期前提醒", "timeDate", "escalation_at(DUE, 'reminder')"),
    ("overdue", "逾期", "timeDate", "escalation_at(DUE, 'overdue')"),
    ("urge", "逾期催办", "timeCycle", "urge_cycle(DUE)"),
    ("escalate", "逾期上报", "timeDate", "escalation_at(DUE, 'escalate')"),
)


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _shape(plane: etree._Element, element_id: str, x: float, y: float, w: float, h: float) -> None:
    shape = etree.SubElement(
        plane, _q(DI, "BPMNShape"), id=f"{element_id}_di", bpmnElement=element_id
    )
    etree.SubElement(shape, _q(DC, "Bounds"), x=str(x), y=str(y), width=str(w), height=str(h))


def _edge(plane: etree._Element, flow_id: str, points: list[tuple[float, float]]) -> None:
    edge = etree.SubElement(plane, _q(DI, "BPMNEdge"), id=f"{flow_id}_di", bpmnElement=flow_id)
    for x, y in points:
        etree.SubElement(edge, _q(DDI, "waypoint"), x=str(x), y=str(y))


def add_timers(path: Path) -> int:
    tree = etree.parse(str(path))
    root = tree.getroot()
    process = root.find("bpmn:process", NS)
    assert process is not None
    plane = root.find(".//bpmndi:BPMNPlane", NS)
    added = 0
    for task in process.findall("bpmn:userTask", NS):
        props = {
            p.get("name"): p.get("value")
            for p in task.iterfind("bpmn:extensionElements/spiff:properties/spiff:property", NS)
        }
        due = props.get("due")
        task_id = task.get("id")
        if not due or process.find(f"bpmn:boundaryEvent[@id='{task_id}_reminder']", NS) is not None:
            continue
        host = None
        if plane is not None:
            shape = plane.find(f"bpmndi:BPMNShape[@bpmnElement='{task_id}']/dc:Bounds", NS)
            if shape is not None:
                host = tuple(float(shape.get(k, "0")) for k in ("x", "y", "width", "height"))
        for n, (kind, name, timer_tag, expression) in enumerate(TIMERS):
            event_id = f"{task_id}_{kind}"
            flow_id, end_id = f"{event_id}_flow", f"{event_id}_done"
            event = etree.SubElement(
                process,
                _q(BPMN, "boundaryEvent"),
                id=event_id,
                name=name,
                attachedToRef=task_id,
                cancelActivity="false",
            )
            ext = etree.SubElement(event, _q(BPMN, "extensionElements"))
            props_el = etree.SubElement(ext, _q(SPIFF, "properties"))
            etree.SubElement(props_el, _q(SPIFF, "property"), name="escalation", value=kind)
            etree.SubElement(event, _q(BPMN, "outgoing")).text = flow_id
            definition = etree.SubElement(event, _q(BPMN, "timerEventDefinition"))
            etree.SubElement(definition, _q(BPMN, timer_tag)).text = expression.replace("DUE", due)
            etree.SubElement(
                process, _q(BPMN, "sequenceFlow"), id=flow_id, sourceRef=event_id, targetRef=end_id
            )
            end = etree.SubElement(process, _q(BPMN, "endEvent"), id=end_id, name=name)
            etree.SubElement(end, _q(BPMN, "incoming")).text = flow_id
            if plane is not None and host is not None:
                x, y, _w, h = host
                cx, bottom = x + 8 + n * 22, y + h
                end_x = cx + n * 30
                _shape(plane, event_id, cx - 9, bottom - 9, 18, 18)
                _shape(plane, end_id, end_x - 9, bottom + 60, 18, 18)
                route = [
                    (cx, bottom + 9),
                    (cx, bottom + 40),
                    (end_x, bottom + 40),
                    (end_x, bottom + 60),
                ]
                _edge(plane, flow_id, route)
            added += 1
    if added:
        etree.indent(tree, space="  ")
        tree.write(str(path), xml_declaration=True, encoding="UTF-8")
    return added


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {add_timers(Path(name))} timer(s) added")
