"""Where a routed item stands, drawn as its BPMN diagram: server-rendered SVG, no JavaScript.

The layout is the BPMNDI of the process version's stored source (an automatic left-to-right
layout when a version has none), parsed once per version. The highlighting comes from the
instance's workflow: done elements green, active ones amber (red when one of their open steps is
overdue), the rest grey. A detached call (a manual task running one child instance per unit)
shows how many of its branches are done. Every label is escaped: the result may go out |safe."""

from __future__ import annotations

import logging
import math
import threading
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from itertools import pairwise

from flask_babel import gettext as _
from lxml import etree
from markupsafe import escape
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState as SpiffState
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.access import Urgency, urgency
from engine.clock import utcnow
from engine.models import HumanTask, Instance, InstanceStatus, ProcessVersion, TaskState
from engine.runtime import load_workflow

log = logging.getLogger(__name__)

BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI = "http://www.omg.org/spec/BPMN/20100524/DI"
DC = "http://www.omg.org/spec/DD/20100524/DC"
DI = "http://www.omg.org/spec/DD/20100524/DI"
SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN, "bpmndi": BPMNDI, "dc": DC, "di": DI, "spiff": SPIFF}

# Stored sources were checked at deployment; parse them as data all the same.
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_pis=True,
    remove_comments=True,
)

EVENTS = frozenset(
    ["startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent"]
)
GATEWAYS = frozenset(
    [
        "exclusiveGateway",
        "parallelGateway",
        "inclusiveGateway",
        "eventBasedGateway",
        "complexGateway",
    ]
)
ACTIVITIES = frozenset(
    [
        "task",
        "userTask",
        "manualTask",
        "scriptTask",
        "serviceTask",
        "sendTask",
        "receiveTask",
        "businessRuleTask",
        "callActivity",
        "subProcess",
        "transaction",
    ]
)
SIZES = {"event": (36.0, 36.0), "gateway": (50.0, 50.0), "task": (100.0, 80.0)}

FONT = 12.0  # task names
SMALL = 11.0  # event, gateway and flow labels
LINE = 15.0
PAD = 16.0
LEGEND_HEIGHT = 30.0


class DiagramError(Exception):
    """The stored source cannot be drawn (no such process, not XML)."""


# ---------------------------------------------------------------------------------------------
# Layout: what to draw where, read from the BPMN source.


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h


Point = tuple[float, float]


@dataclass(frozen=True)
class Node:
    id: str
    tag: str  # the BPMN element's local name: userTask, startEvent, parallelGateway, ...
    name: str
    box: Box
    label: Box | None = None
    detached: bool = False  # a manual task naming a `process`: one child instance per item
    loop: str | None = None  # "parallel" / "sequential" multi-instance, "standard" loop

    @property
    def family(self) -> str:
        return _family(self.tag)


@dataclass(frozen=True)
class Flow:
    id: str
    name: str
    source: str
    target: str
    points: tuple[Point, ...] = ()
    label: Box | None = None
    is_default: bool = False


@dataclass(frozen=True)
class Layout:
    process_id: str
    name: str
    nodes: tuple[Node, ...]
    flows: tuple[Flow, ...]


def _family(tag: str) -> str:
    if tag in EVENTS:
        return "event"
    return "gateway" if tag in GATEWAYS else "task"


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _number(value: str | None) -> float | None:
    try:
        number = float(value or "")
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _box(bounds: etree._Element | None) -> Box | None:
    if bounds is None:
        return None
    values = [_number(bounds.get(k)) for k in ("x", "y", "width", "height")]
    if any(v is None for v in values):
        return None
    x, y, w, h = (float(v or 0) for v in values)
    return Box(x, y, w, h) if w > 0 and h > 0 else None


def _label_box(element: etree._Element) -> Box | None:
    return _box(element.find("bpmndi:BPMNLabel/dc:Bounds", NS))


def _waypoints(edge: etree._Element) -> tuple[Point, ...]:
    points = []
    for waypoint in edge.iterfind("di:waypoint", NS):
        x, y = _number(waypoint.get("x")), _number(waypoint.get("y"))
        if x is None or y is None:
            return ()
        points.append((x, y))
    return tuple(points) if len(points) >= 2 else ()


Shapes = dict[str, tuple[Box, Box | None]]  # element id -> bounds, label bounds
Edges = dict[str, tuple[tuple[Point, ...], Box | None]]  # flow id -> waypoints, label bounds


def _diagram_elements(root: etree._Element) -> tuple[Shapes, Edges]:
    """The shapes and edges of the diagram interchange, by the element they draw."""
    shapes: Shapes = {}
    for shape in root.iter(_q(BPMNDI, "BPMNShape")):
        bounds = _box(shape.find("dc:Bounds", NS))
        if bounds is not None:
            shapes.setdefault(shape.get("bpmnElement", ""), (bounds, _label_box(shape)))
    edges: Edges = {}
    for edge in root.iter(_q(BPMNDI, "BPMNEdge")):
        points = _waypoints(edge)
        if points:
            edges.setdefault(edge.get("bpmnElement", ""), (points, _label_box(edge)))
    return shapes, edges


def _find_process(root: etree._Element, process_id: str | None) -> etree._Element:
    processes = root.findall("bpmn:process", NS)
    for process in processes:
        if process_id is None or process.get("id") == process_id:
            return process
    raise DiagramError(f"no process '{process_id}' in the source")


def _properties(element: etree._Element) -> dict[str, str]:
    path = "bpmn:extensionElements/spiff:properties/spiff:property"
    return {p.get("name", ""): p.get("value", "") for p in element.iterfind(path, NS)}


def _loop(element: etree._Element) -> str | None:
    multi = element.find("bpmn:multiInstanceLoopCharacteristics", NS)
    if multi is not None:
        return "sequential" if multi.get("isSequential") == "true" else "parallel"
    if element.find("bpmn:standardLoopCharacteristics", NS) is not None:
        return "standard"
    return None


def _node(element: etree._Element, shape: tuple[Box, Box | None] | None) -> Node:
    tag = _local(element)
    node = Node(
        id=element.get("id", ""),
        tag=tag,
        name=" ".join((element.get("name") or "").split()),
        box=Box(0, 0, *SIZES[_family(tag)]),
        detached=tag == "manualTask" and bool(_properties(element).get("process")),
        loop=_loop(element),
    )
    return replace(node, box=shape[0], label=shape[1]) if shape else node


def _flow(element: etree._Element, edges: Edges, defaults: set[str]) -> Flow:
    flow_id = element.get("id", "")
    points, label = edges.get(flow_id, ((), None))
    return Flow(
        id=flow_id,
        name=" ".join((element.get("name") or "").split()),
        source=element.get("sourceRef", ""),
        target=element.get("targetRef", ""),
        points=points,
        label=label,
        is_default=flow_id in defaults,
    )


def parse_layout(source: str | bytes, process_id: str | None = None) -> Layout:
    """The drawing of `process_id` (the first process when None) in a BPMN source."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise DiagramError(f"the process source is not well-formed XML: {exc}") from None
    process = _find_process(root, process_id)
    shapes, edges = _diagram_elements(root)
    elements = [e for e in process if _local(e) in EVENTS | GATEWAYS | ACTIVITIES and e.get("id")]
    nodes = [_node(e, shapes.get(e.get("id", ""))) for e in elements]
    known = {n.id for n in nodes}
    defaults = {e.get("default", "") for e in elements if e.get("default")}
    flows = [
        _flow(f, edges, defaults)
        for f in process.iterfind("bpmn:sequenceFlow", NS)
        if f.get("sourceRef") in known and f.get("targetRef") in known
    ]
    if any(n.id not in shapes for n in nodes):
        attached = {
            e.get("id", ""): e.get("attachedToRef", "")
            for e in elements
            if _local(e) == "boundaryEvent" and e.get("attachedToRef") in known
        }
        nodes = _auto_place(nodes, flows, attached)
        flows = [replace(f, points=(), label=None) for f in flows]
    flows = _route_missing(nodes, flows)
    return Layout(process.get("id", ""), process.get("name") or "", tuple(nodes), tuple(flows))


# Automatic layout for sources without diagram interchange: columns by longest path from the
# start (loops ignored), one row per element of a column.


def _back_edges(order: list[str], succ: dict[str, list[str]]) -> set[tuple[str, str]]:
    seen: dict[str, int] = {}  # 1 while on the path, 2 when finished
    back: set[tuple[str, str]] = set()
    for start in order:
        if start in seen:
            continue
        seen[start] = 1
        stack = [(start, iter(succ[start]))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                seen[node] = 2
                stack.pop()
            elif seen.get(child) == 1:
                back.add((node, child))
            elif child not in seen:
                seen[child] = 1
                stack.append((child, iter(succ[child])))
    return back


def _ranks(ids: list[str], pairs: list[tuple[str, str]]) -> dict[str, int]:
    succ: dict[str, list[str]] = defaultdict(list)
    for source, target in pairs:
        succ[source].append(target)
    targets = {t for _s, t in pairs}
    order = [i for i in ids if i not in targets] + [i for i in ids if i in targets]
    back = _back_edges(order, succ)
    forward = [(s, t) for s, t in pairs if (s, t) not in back]
    indegree = {i: 0 for i in ids}
    for _s, t in forward:
        indegree[t] += 1
    rank = {i: 0 for i in ids}
    ready = [i for i in order if indegree[i] == 0]
    while ready:
        node = ready.pop(0)
        for s, t in forward:
            if s == node:
                rank[t] = max(rank[t], rank[node] + 1)
                indegree[t] -= 1
                if indegree[t] == 0:
                    ready.append(t)
    return rank


def _auto_place(
    nodes: list[Node], flows: list[Flow], attached: dict[str, str] | None = None
) -> list[Node]:
    """`attached` maps boundary events to their host: they sit on the host's lower edge, and
    what follows them ranks after the host."""
    attached = attached or {}
    pairs = [(f.source, f.target) for f in flows] + [(h, b) for b, h in attached.items()]
    rank = _ranks([n.id for n in nodes], pairs)
    rows: dict[int, int] = defaultdict(int)
    boxes: dict[str, Box] = {}
    for node in nodes:
        if node.id in attached:
            continue
        column, row = rank[node.id], rows[rank[node.id]]
        rows[column] += 1
        w, h = SIZES[node.family]
        cx, cy = 90 + column * 160, 80 + row * 120
        boxes[node.id] = Box(cx - w / 2, cy - h / 2, w, h)
    on_host: dict[str, int] = defaultdict(int)
    for node in nodes:
        host = attached.get(node.id)
        if host is not None:
            w, h = SIZES[node.family]
            hb = boxes[host]
            boxes[node.id] = Box(
                hb.right - w - 4 - on_host[host] * (w + 4), hb.bottom - h / 2, w, h
            )
            on_host[host] += 1
    return [replace(n, box=boxes[n.id], label=None) for n in nodes]


def _route(source: Box, target: Box, bottom: float) -> tuple[Point, ...]:
    if target.cx <= source.cx:  # a loop back: round below everything
        return (
            (source.cx, source.bottom),
            (source.cx, bottom),
            (target.cx, bottom),
            (target.cx, target.bottom),
        )
    start, end = (source.right, source.cy), (target.x, target.cy)
    if abs(start[1] - end[1]) < 1:
        return (start, end)
    middle = (start[0] + end[0]) / 2
    return (start, (middle, start[1]), (middle, end[1]), end)


def _route_missing(nodes: list[Node], flows: list[Flow]) -> list[Flow]:
    boxes = {n.id: n.box for n in nodes}
    bottom = max((b.bottom for b in boxes.values()), default=0) + 30
    return [
        f if f.points else replace(f, points=_route(boxes[f.source], boxes[f.target], bottom))
        for f in flows
    ]


class LayoutCache:
    """Parsed layouts per process version (keyed with the content hash, so a reused id after
    a database reset never serves another process's drawing)."""

    def __init__(self) -> None:
        self._layouts: dict[tuple[int, str], Layout] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, version_id: int) -> Layout:
        row = session.execute(
            select(ProcessVersion.content_hash, ProcessVersion.process_id).where(
                ProcessVersion.id == version_id
            )
        ).one_or_none()
        if row is None:
            raise DiagramError(f"no process version {version_id}")
        key = (version_id, row.content_hash)
        layout = self._layouts.get(key)
        if layout is None:
            sources = session.scalar(
                select(ProcessVersion.sources).where(ProcessVersion.id == version_id)
            )
            layout = parse_layout(_source_of(sources or {}, row.process_id), row.process_id)
            with self._lock:
                self._layouts[key] = layout
        return layout

    def clear(self) -> None:
        with self._lock:
            self._layouts.clear()


def _source_of(sources: dict[str, str], process_id: str) -> str:
    """The BPMN file defining `process_id`: by convention named after it."""
    if f"{process_id}.bpmn" in sources:
        return sources[f"{process_id}.bpmn"]
    for name, text in sorted(sources.items()):
        if name.endswith(".bpmn") and f'id="{process_id}"' in text:
            return text
    raise DiagramError(f"the stored sources hold no process '{process_id}'")


LAYOUTS = LayoutCache()


def version_layout(session: Session, version_id: int) -> Layout:
    return LAYOUTS.get(session, version_id)


# ---------------------------------------------------------------------------------------------
# Progress: which elements are done, which are active, how many branches have finished.


class State(StrEnum):
    DONE = "done"
    ACTIVE = "active"
    OVERDUE = "overdue"
    IDLE = "idle"


ACTIVE_STATES = (SpiffState.READY, SpiffState.STARTED, SpiffState.WAITING)
REACHED = (*ACTIVE_STATES, SpiffState.COMPLETED)


@dataclass(frozen=True)
class Progress:
    states: dict[str, State] = field(default_factory=dict)
    # (source, target) element pairs the instance has moved along.
    taken: frozenset[tuple[str, str]] = frozenset()
    # Detached calls: (completed, all) child instances, cancelled ones left out.
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def state(self, element_id: str) -> State:
        return self.states.get(element_id, State.IDLE)


def _spiff_states(tasks: Iterable[Task]) -> dict[str, State]:
    states: dict[str, State] = {}
    for task in tasks:
        element = task.task_spec.bpmn_id
        if task.state in ACTIVE_STATES:
            states[element] = State.ACTIVE
        elif task.state == SpiffState.COMPLETED:
            states.setdefault(element, State.DONE)
    return states


def _merged(task: Task) -> bool:
    """A branch that arrived at a join which then fired on another branch's task."""
    return task.state == SpiffState.CANCELLED and type(task.task_spec).__name__.endswith("Gateway")


def _taken(tasks: Iterable[Task]) -> frozenset[tuple[str, str]]:
    """A flow was taken when a task of its target hangs under a completed task of its source
    (a merged branch of a parallel join is cancelled, having arrived)."""
    return frozenset(
        (source.task_spec.bpmn_id, task.task_spec.bpmn_id)
        for task in tasks
        if (source := _source(task)) is not None
        and source.state == SpiffState.COMPLETED
        and (task.state in REACHED or _merged(task))
    )


def _source(task: Task) -> Task | None:
    """The element a task came from: its parent, skipping the engine's own structural tasks
    (a step with boundary events hangs under an unnamed split)."""
    parent = task.parent
    while parent is not None and parent.task_spec.bpmn_id is None:
        parent = parent.parent
    return parent


@dataclass(frozen=True)
class _Branch:
    id: int
    parent_id: int | None
    parent_task_id: str | None
    status: InstanceStatus


def _branches(session: Session, instance: Instance) -> list[_Branch]:
    rows = session.execute(
        select(Instance.id, Instance.parent_id, Instance.parent_task_id, Instance.status).where(
            Instance.root_id == (instance.root_id or instance.id), Instance.id != instance.id
        )
    )
    return [_Branch(*row) for row in rows]


def _branch_elements(
    instance: Instance, branches: list[_Branch], element_of: dict[str, str]
) -> dict[int, str]:
    """Every descendant instance -> the element of `instance` whose detached call it serves."""
    below: dict[int | None, list[int]] = defaultdict(list)
    for branch in branches:
        below[branch.parent_id].append(branch.id)
    found: dict[int, str] = {}
    for child in (b for b in branches if b.parent_id == instance.id):
        element = element_of.get(child.parent_task_id or "")
        stack = [child.id]
        while element is not None and stack:
            current = stack.pop()
            if current not in found:
                found[current] = element
                stack.extend(below[current])
    return found


def _counts(
    instance: Instance, branches: list[_Branch], element_of: dict[str, str]
) -> dict[str, tuple[int, int]]:
    done: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for child in branches:
        element = element_of.get(child.parent_task_id or "")
        if child.parent_id != instance.id or element is None:
            continue
        if child.status != InstanceStatus.CANCELLED:
            total[element] += 1
        if child.status == InstanceStatus.COMPLETED:
            done[element] += 1
    return {element: (done[element], total[element]) for element in total}


def _overdue(
    session: Session, instance: Instance, branch_of: dict[int, str], now: datetime
) -> set[str]:
    """Elements with an open step past its due date, in the instance or one of its branches."""
    rows = session.execute(
        select(HumanTask.instance_id, HumanTask.element_id, HumanTask.due_at).where(
            HumanTask.instance_id.in_([instance.id, *branch_of]),
            HumanTask.state == TaskState.READY,
            HumanTask.due_at.is_not(None),
        )
    )
    return {
        element_id if instance_id == instance.id else branch_of[instance_id]
        for instance_id, element_id, due_at in rows
        if urgency(due_at, now) == Urgency.RED
    }


def instance_progress(session: Session, instance: Instance, now: datetime) -> Progress:
    workflow = load_workflow(session, instance)
    tasks = [t for t in workflow.get_tasks() if t.task_spec.bpmn_id]
    element_of = {str(t.id): t.task_spec.bpmn_id for t in tasks}
    branches = _branches(session, instance)
    branch_of = _branch_elements(instance, branches, element_of)
    late = _overdue(session, instance, branch_of, now)
    states = {
        element: State.OVERDUE if state == State.ACTIVE and element in late else state
        for element, state in _spiff_states(tasks).items()
    }
    return Progress(states, _taken(tasks), _counts(instance, branches, element_of))


# ---------------------------------------------------------------------------------------------
# Drawing.


@dataclass(frozen=True)
class Style:
    stroke: str
    fill: str
    text: str
    width: float


STYLES = {
    State.DONE: Style("#2e8b57", "#e7f4ec", "#1d4d33", 1.8),
    State.ACTIVE: Style("#d4a017", "#fff4d2", "#4d3a00", 2.6),
    State.OVERDUE: Style("#c0392b", "#fdecea", "#611a15", 2.6),
    State.IDLE: Style("#a3a8ad", "#f8f8f8", "#6b6f73", 1.2),
}
FLOW_TAKEN = "#2e8b57"
FLOW_IDLE = "#a3a8ad"


def _state_labels() -> dict[State, str]:
    return {
        State.DONE: _("Completed"),
        State.ACTIVE: _("In progress"),
        State.OVERDUE: _("Overdue"),
        State.IDLE: _("Not yet reached"),
    }


def _e(text: object) -> str:
    return str(escape(str(text)))


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _units(char: str) -> float:
    """Width in ems: CJK characters are square, the rest about half as wide."""
    return 1.0 if unicodedata.east_asian_width(char) in ("W", "F") else 0.6


def _width(text: str) -> float:
    return sum(_units(c) for c in text)


def _wrap_line(text: str, per_line: float, balanced: bool = True) -> list[str]:
    total = _width(text)
    if total <= per_line:
        return [text]
    count = math.ceil(total / per_line)
    # Balanced lines rather than a short last one (unless the text will be cut anyway).
    cap = min(per_line, total / count + 0.99) if balanced else per_line
    lines, line, used = [], "", 0.0
    for char in text:
        if line and used + _units(char) > cap:
            lines.append(line.strip())
            line, used = "", 0.0
        line += char
        used += _units(char)
    return [*lines, line.strip()]


def wrap(text: str, per_line: float, max_lines: int) -> list[str]:
    """`text` over lines of at most `per_line` ems (by character count), ending in … when cut."""
    lines = _wrap_line(text, per_line) if text else []
    if len(lines) <= max_lines:
        return lines
    kept = _wrap_line(text, per_line, balanced=False)[:max_lines]
    last = kept[-1]
    while last and _width(last) + 1 > per_line:
        last = last[:-1]
    return [*kept[:-1], last + "…"]


def _text(
    lines: Sequence[str], x: float, top: float, color: str, size: float, halo: bool = False
) -> str:
    """Lines centred on x, the first baseline one line below `top`."""
    if not lines:
        return ""
    extra = ' paint-order="stroke" stroke="#fff" stroke-width="3"' if halo else ""
    spans = "".join(
        f'<tspan x="{_n(x)}" y="{_n(top + size + i * (size + 3))}">{_e(line)}</tspan>'
        for i, line in enumerate(lines)
    )
    return f'<text text-anchor="middle" font-size="{_n(size)}" fill="{color}"{extra}>{spans}</text>'


def _block_top(lines: Sequence[str], cy: float, size: float) -> float:
    """Where a block of lines starts so that it is centred on cy."""
    height = len(lines) * size + (len(lines) - 1) * 3
    return cy - height / 2 - size * 0.12


def _task_name(node: Node, style: Style) -> str:
    box = node.box
    # Up to three lines in a standard task, centred a little low to clear the icon.
    lines = wrap(node.name or node.id, (box.w - 12) / FONT, max(1, int((box.h - 26) // LINE)))
    return _text(lines, box.cx, _block_top(lines, box.cy + 3, FONT), style.text, FONT)


def _icon(node: Node, style: Style) -> str:
    x, y = node.box.x + 7, node.box.y + 7
    stroke = f'fill="none" stroke="{style.stroke}" stroke-width="1.3"'
    if node.detached:  # branches: one line forking into three
        return (
            f'<path class="dg-branches" d="M{_n(x)},{_n(y + 6)} h5 l7,-5 M{_n(x + 5)},{_n(y + 6)}'
            f' h7 M{_n(x + 5)},{_n(y + 6)} l7,5" {stroke}/>'
        )
    if node.tag == "userTask":  # a head and shoulders
        return (
            f'<circle cx="{_n(x + 6)}" cy="{_n(y + 3)}" r="3" {stroke}/>'
            f'<path d="M{_n(x)},{_n(y + 13)} q6,-9 12,0" {stroke}/>'
        )
    if node.tag == "scriptTask":  # lines of a script
        return "".join(f'<path d="M{_n(x)},{_n(y + 2 + 4 * i)} h11" {stroke}/>' for i in range(3))
    return ""


def _loop_marker(node: Node, style: Style) -> str:
    if node.loop is None:
        return ""
    cx, bottom = node.box.cx, node.box.bottom - 5
    stroke = f'stroke="{style.stroke}" stroke-width="1.6" fill="none"'
    if node.loop == "standard":
        return f'<path d="M{_n(cx - 4)},{_n(bottom - 2)} a5,5 0 1,1 8,0" {stroke}/>'
    if node.loop == "sequential":
        return "".join(
            f'<path d="M{_n(cx - 5)},{_n(bottom - 9 + 4 * i)} h10" {stroke}/>' for i in range(3)
        )
    return "".join(
        f'<path d="M{_n(cx - 4 + 4 * i)},{_n(bottom - 10)} v10" {stroke}/>' for i in range(3)
    )


def _count_badge(node: Node, count: tuple[int, int] | None, style: Style) -> str:
    if count is None:
        return ""
    text = f"{count[0]}/{count[1]}"
    return (
        f'<text class="dg-count" x="{_n(node.box.right - 6)}" y="{_n(node.box.y + 14)}" '
        f'text-anchor="end" font-size="10" font-weight="bold" fill="{style.text}">'
        f"{_e(text)}</text>"
    )


def _task_svg(node: Node, style: Style, count: tuple[int, int] | None) -> str:
    box = node.box
    dash = ' stroke-dasharray="6 3"' if node.tag == "callActivity" else ""
    width = style.width + (1.5 if node.tag == "callActivity" else 0)
    return (
        f'<rect x="{_n(box.x)}" y="{_n(box.y)}" width="{_n(box.w)}" height="{_n(box.h)}" rx="10" '
        f'fill="{style.fill}" stroke="{style.stroke}" stroke-width="{_n(width)}"{dash}/>'
        + _icon(node, style)
        + _count_badge(node, count, style)
        + _loop_marker(node, style)
        + _task_name(node, style)
    )


def _outside_label(node: Node, style: Style) -> str:
    """Event and gateway names: in their DI label box, else under the shape."""
    if not node.name:
        return ""
    if node.label is not None:
        per_line = max(node.label.w / SMALL, 4.0)
        lines = wrap(node.name, per_line + 0.5, 3)
        return _text(lines, node.label.cx, node.label.y - 2, style.text, SMALL, halo=True)
    lines = wrap(node.name, 9, 3)
    return _text(lines, node.box.cx, node.box.bottom + 2, style.text, SMALL, halo=True)


def _event_svg(node: Node, style: Style) -> str:
    box = node.box
    r = min(box.w, box.h) / 2
    width = style.width + 2.2 if node.tag == "endEvent" else style.width
    circle = (
        f'<circle cx="{_n(box.cx)}" cy="{_n(box.cy)}" r="{_n(r)}" fill="{style.fill}" '
        f'stroke="{style.stroke}" stroke-width="{_n(width)}"/>'
    )
    if node.tag not in ("startEvent", "endEvent"):  # intermediate events: a double ring
        circle += (
            f'<circle cx="{_n(box.cx)}" cy="{_n(box.cy)}" r="{_n(r - 3)}" fill="none" '
            f'stroke="{style.stroke}" stroke-width="{_n(style.width)}"/>'
        )
    return circle + _outside_label(node, style)


def _gateway_marker(node: Node, style: Style) -> str:
    cx, cy, arm = node.box.cx, node.box.cy, min(node.box.w, node.box.h) * 0.2
    stroke = f'stroke="{style.stroke}" stroke-width="3" stroke-linecap="round" fill="none"'
    if node.tag == "parallelGateway":
        return (
            f'<path d="M{_n(cx - arm)},{_n(cy)} h{_n(2 * arm)} M{_n(cx)},{_n(cy - arm)} '
            f'v{_n(2 * arm)}" {stroke}/>'
        )
    if node.tag == "exclusiveGateway":
        d = arm * 0.8
        return (
            f'<path d="M{_n(cx - d)},{_n(cy - d)} l{_n(2 * d)},{_n(2 * d)} '
            f'M{_n(cx + d)},{_n(cy - d)} l{_n(-2 * d)},{_n(2 * d)}" {stroke}/>'
        )
    return f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{_n(arm)}" {stroke}/>'


def _gateway_svg(node: Node, style: Style) -> str:
    box = node.box
    points = " ".join(
        f"{_n(x)},{_n(y)}"
        for x, y in ((box.cx, box.y), (box.right, box.cy), (box.cx, box.bottom), (box.x, box.cy))
    )
    return (
        f'<polygon points="{points}" fill="{style.fill}" stroke="{style.stroke}" '
        f'stroke-width="{_n(style.width)}"/>'
        + _gateway_marker(node, style)
        + _outside_label(node, style)
    )


def _node_title(node: Node, state: State, count: tuple[int, int] | None) -> str:
    parts = [node.name or node.id, _state_labels()[state]]
    if count is not None:
        parts.append(_("%(done)s of %(total)s branches completed", done=count[0], total=count[1]))
    return " · ".join(parts)


def _node_svg(node: Node, progress: Progress) -> str:
    state = progress.state(node.id)
    style = STYLES[state]
    count = progress.counts.get(node.id) if node.family == "task" else None
    if node.family == "event":
        body = _event_svg(node, style)
    elif node.family == "gateway":
        body = _gateway_svg(node, style)
    else:
        body = _task_svg(node, style, count)
    return (
        f'<g class="dg-node dg-{state}" data-element="{_e(node.id)}" data-state="{state}">'
        f"<title>{_e(_node_title(node, state, count))}</title>{body}</g>"
    )


def _longest_segment(points: Sequence[Point]) -> tuple[Point, Point]:
    pairs = list(pairwise(points))
    return max(pairs, key=lambda p: abs(p[1][0] - p[0][0]) + abs(p[1][1] - p[0][1]))


def _flow_label(flow: Flow, color: str) -> str:
    if not flow.name:
        return ""
    if flow.label is not None:
        lines = wrap(flow.name, max(flow.label.w / SMALL, 4.0) + 0.5, 2)
        return _text(lines, flow.label.cx, flow.label.y - 2, color, SMALL, halo=True)
    (x1, y1), (x2, y2) = _longest_segment(flow.points)
    return _text(
        wrap(flow.name, 8, 2), (x1 + x2) / 2, (y1 + y2) / 2 - SMALL - 6, color, SMALL, halo=True
    )


def _default_mark(flow: Flow, color: str) -> str:
    """The slash BPMN puts across the start of a default flow."""
    if not flow.is_default:
        return ""
    (x1, y1), (x2, y2) = flow.points[0], flow.points[1]
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    mx, my = x1 + ux * 10, y1 + uy * 10
    dx, dy = (ux - uy) * 5, (uy + ux) * 5  # a slash at 45 degrees to the flow
    return (
        f'<path d="M{_n(mx - dx)},{_n(my - dy)} L{_n(mx + dx)},{_n(my + dy)}" '
        f'stroke="{color}" stroke-width="1.5"/>'
    )


def _flow_svg(flow: Flow, progress: Progress, prefix: str) -> str:
    taken = (flow.source, flow.target) in progress.taken
    color, state = (FLOW_TAKEN, "taken") if taken else (FLOW_IDLE, "idle")
    points = " ".join(f"{_n(x)},{_n(y)}" for x, y in flow.points)
    return (
        f'<g class="dg-flow dg-{state}" data-flow="{_e(flow.id)}" data-state="{state}">'
        f'<polyline points="{points}" fill="none" stroke="{color}" '
        f'stroke-width="{"1.8" if taken else "1.3"}" stroke-linejoin="round" '
        f'marker-end="url(#{_e(prefix)}-arrow-{state})"/>'
        + _default_mark(flow, color)
        + _flow_label(flow, "#444" if taken else "#6b6f73")
        + "</g>"
    )


def _defs(prefix: str) -> str:
    markers = "".join(
        f'<marker id="{_e(prefix)}-arrow-{state}" viewBox="0 0 10 10" refX="9.5" refY="5" '
        f'markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
        f'<path d="M0,1 L10,5 L0,9 z" fill="{color}"/></marker>'
        for state, color in (("taken", FLOW_TAKEN), ("idle", FLOW_IDLE))
    )
    return f"<defs>{markers}</defs>"


def _legend_items() -> list[tuple[str, str]]:
    labels = _state_labels()
    return [(state.value, labels[state]) for state in State] + [
        ("branches", _("n/m: branches completed / all"))
    ]


def _legend_width() -> float:
    return sum(30 + _width(label) * SMALL + 16 for _key, label in _legend_items())


def _legend_svg(x: float, y: float) -> str:
    parts = []
    for key, label in _legend_items():
        if key == "branches":
            style = STYLES[State.ACTIVE]
            swatch = (
                f'<path d="M{_n(x)},{_n(y + 6)} h6 l8,-6 M{_n(x + 6)},{_n(y + 6)} h8 '
                f'M{_n(x + 6)},{_n(y + 6)} l8,6" fill="none" stroke="{style.stroke}" '
                'stroke-width="1.3"/>'
            )
        else:
            style = STYLES[State(key)]
            swatch = (
                f'<rect x="{_n(x)}" y="{_n(y)}" width="22" height="13" rx="3" '
                f'fill="{style.fill}" stroke="{style.stroke}" stroke-width="{_n(style.width)}"/>'
            )
        parts.append(
            f'<g class="dg-legend-{key}">{swatch}<text x="{_n(x + 28)}" y="{_n(y + 10.5)}" '
            f'font-size="{_n(SMALL)}" fill="#444">{_e(label)}</text></g>'
        )
        x += 30 + _width(label) * SMALL + 16
    return f'<g class="dg-legend">{"".join(parts)}</g>'


def _extent(layout: Layout) -> Box:
    xs: list[float] = []
    ys: list[float] = []
    for node in layout.nodes:
        xs += [node.box.x, node.box.right]
        ys += [node.box.y, node.box.bottom]
        if node.family != "task" and node.name:
            label = node.label or Box(node.box.cx - 50, node.box.bottom, 100, 3 * LINE)
            xs += [label.x, label.right]
            ys += [label.y, label.bottom]
    for flow in layout.flows:
        xs += [x for x, _y in flow.points]
        ys += [y for _x, y in flow.points]
        if flow.label is not None:
            xs += [flow.label.x, flow.label.right]
            ys += [flow.label.y, flow.label.bottom]
    return Box(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def render_svg(
    layout: Layout, progress: Progress | None = None, *, id_prefix: str = "dg", legend: bool = True
) -> str:
    """The diagram as a standalone <svg> element, highlighted by `progress`."""
    if not layout.nodes:
        return ""
    progress = progress or Progress()
    area = _extent(layout)
    x0, y0 = area.x - PAD, area.y - PAD
    width = max(area.w + 2 * PAD, _legend_width() + 2 * PAD if legend else 0)
    height = area.h + 2 * PAD + (LEGEND_HEIGHT if legend else 0)
    title = layout.name or layout.process_id
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dg" width="{_n(width)}" '
        f'height="{_n(height)}" viewBox="{_n(x0)} {_n(y0)} {_n(width)} {_n(height)}" '
        f'role="img" aria-labelledby="{_e(id_prefix)}-title" '
        f'data-process="{_e(layout.process_id)}">'
        f'<title id="{_e(id_prefix)}-title">{_e(title)}</title>',
        _defs(id_prefix),
        *(_flow_svg(flow, progress, id_prefix) for flow in layout.flows),
        *(_node_svg(node, progress) for node in layout.nodes),
    ]
    if legend:
        parts.append(_legend_svg(x0 + PAD, area.bottom + PAD + 4))
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Entry points.


def process_diagram(session: Session, instance: Instance, now: datetime | None = None) -> str:
    """One instance's process (a routed item, or one unit's branch of it), highlighted; empty
    when its stored source cannot be drawn."""
    try:
        layout = version_layout(session, instance.process_version_id)
    except DiagramError as exc:
        log.warning("no diagram for instance %s: %s", instance.id, exc)
        return ""
    progress = instance_progress(session, instance, now or utcnow())
    return render_svg(layout, progress, id_prefix=f"dg{instance.id}")


def item_diagram(session: Session, root: Instance, now: datetime | None = None) -> str:
    """Where a routed item stands: its top-level process (given a branch, its item's)."""
    if root.parent_id is not None and root.root_id is not None:
        top = session.get(Instance, root.root_id)
        root = top if top is not None else root
    return process_diagram(session, root, now)
