"""Deploying processes: parse, check what the parser leaves to run time, store each distinct
content once as a new version. Running instances keep the version they started on."""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .dmn_check import table_problems
from .errors import DeployError
from .forms import FORMS
from .models import PositionKind, ProcessVersion
from .specs import new_parser, specs_to_dict

MAX_FILE_BYTES = 2_000_000
BPMN = "http://www.omg.org/spec/BPMN/20100524/MODEL"
DMN_NAMESPACES = (
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
    "https://www.omg.org/spec/DMN/20151101/dmn.xsd",
)
SPIFF = "http://spiffworkflow.org/bpmn/schema/1.0/core"
USER_TASK_PROPERTIES = ("unit", "position", "form")
EXPRESSION_PROPERTIES = ("unit", "position", "due", "applicant")
# What personal data a step's holders may unmask (see engine.assistance).
REVEALS = {"identity", "medical"}
DMN_OPERATORS = ("<", ">", "==", "!=", "in ", "not in ")

# No DTDs, no entities, no network: a process file is data, never a way to read the server.
_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
)


@dataclass(frozen=True)
class Deployed:
    process_id: str
    version: int
    created: bool


@dataclass
class _Source:
    path: str
    text: str
    tree: etree._ElementTree
    calls: list[tuple[str, str]] = field(default_factory=list)  # (where, called process id)

    def where(self, element: etree._Element | None, element_id: str = "") -> str:
        line = element.sourceline if element is not None else None
        eid = element_id or (element.get("id", "") if element is not None else "")
        loc = f"{self.path}:{line}" if line else self.path
        return f"{loc}: element '{eid}'" if eid else loc

    def find_id(self, element_id: str) -> etree._Element | None:
        if not element_id:
            return None
        found = self.tree.xpath("//*[@id=$i]", i=element_id)
        return found[0] if found else None


def _read(path: Path) -> _Source:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # never more: the file may be any size
    except OSError as exc:
        raise DeployError([f"{path}: cannot be read ({exc.strerror or exc})"]) from None
    if len(data) > MAX_FILE_BYTES:
        raise DeployError([f"{path}: file is over the limit of {MAX_FILE_BYTES} bytes"])
    try:
        tree = etree.ElementTree(etree.fromstring(data, _SAFE_PARSER))
    except etree.XMLSyntaxError as exc:
        raise DeployError([f"{path}:{exc.lineno}: malformed XML: {exc.msg}"]) from None
    if tree.docinfo.doctype:
        raise DeployError([f"{path}:1: a DOCTYPE is not allowed in process files"])
    return _Source(str(path), data.decode("utf-8", errors="replace"), tree)


def _check_python(
    src: _Source, element: etree._Element, code: str, what: str, mode: str = "eval"
) -> list[str]:
    try:
        ast.parse(code.strip(), mode=mode)
    except SyntaxError as exc:
        return [f"{src.where(element)}: {what} is not valid Python ({exc.msg}): {code.strip()!r}"]
    except (RecursionError, MemoryError):
        # CPython's parser gives up on deeply nested code with these rather than SyntaxError.
        return [f"{src.where(element)}: {what} is nested too deeply to be read as Python"]
    return []


TIMER_PARSERS = {
    "timeDuration": TimerEventDefinition.parse_iso_duration,
    "timeDate": TimerEventDefinition.get_datetime,
    "timeCycle": TimerEventDefinition.parse_iso_recurring_interval,
}
ISO_LOOKING = re.compile(r"^(R\d*/)?P[0-9YMWDTHS.]+$|^\d{4}-\d{2}-\d{2}")


def _check_timer(src: _Source, event: etree._Element, code: str, tag: str) -> list[str]:
    """Timer expressions are Python: an ISO value must be quoted, and a quoted one must parse."""
    what = f"timer {tag}"
    problems = _check_python(src, event, code, what)
    if problems:
        return problems
    node = ast.parse(code.strip(), mode="eval").body
    if isinstance(node, ast.Name) and ISO_LOOKING.match(node.id):
        return [
            f"{src.where(event)}: {what} {node.id} is read as a variable name; "
            f"write the ISO value in quotes: '{node.id}'"
        ]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            TIMER_PARSERS[tag](node.value)
        except Exception:
            return [f"{src.where(event)}: {what} {node.value!r} is not a valid ISO 8601 value"]
    return []


def _properties(task: etree._Element) -> dict[str, str]:
    ns = {"bpmn": BPMN, "spiff": SPIFF}
    return {
        p.get("name", ""): p.get("value", "")
        for p in task.iterfind("bpmn:extensionElements/spiff:properties/spiff:property", ns)
    }


def _check_bpmn(src: _Source) -> list[str]:
    problems: list[str] = []
    ns = {"bpmn": BPMN, "spiff": SPIFF}
    for el in src.tree.iterfind(".//bpmn:script", ns):
        problems += _check_python(src, el.getparent(), el.text or "", "script", "exec")
    for tag in ("preScript", "postScript"):
        for el in src.tree.iterfind(f".//spiff:{tag}", ns):
            task = el.getparent().getparent()
            problems += _check_python(src, task, el.text or "", tag, "exec")
    for el in src.tree.iterfind(".//bpmn:conditionExpression", ns):
        problems += _check_python(src, el.getparent(), el.text or "", "condition")
    for tag in ("timeDuration", "timeDate", "timeCycle"):
        for el in src.tree.iterfind(f".//bpmn:{tag}", ns):
            problems += _check_timer(src, el.getparent().getparent(), el.text or "", tag)
    for task in src.tree.iterfind(".//bpmn:manualTask", ns):
        props = _properties(task)
        if not props.get("process") or "inputs" not in props:
            problems.append(
                f"{src.where(task)}: a manual task is a detached call and needs "
                "the properties process and inputs"
            )
            continue
        problems += _check_python(src, task, props["inputs"], "property 'inputs'")
        src.calls.append((src.where(task), props["process"]))
    for task in src.tree.iterfind(".//bpmn:userTask", ns):
        props = _properties(task)
        # A unit's step names unit and position; an applicant's own step names `applicant`.
        needed = ("applicant", "form") if "applicant" in props else USER_TASK_PROPERTIES
        missing = [name for name in needed if name not in props]
        if missing:
            problems.append(f"{src.where(task)}: user task lacks properties {', '.join(missing)}")
        if "applicant" in props and ("unit" in props or "position" in props):
            problems.append(f"{src.where(task)}: an applicant's step names no unit or position")
        unknown_reveals = set(filter(None, props.get("reveals", "").split(","))) - REVEALS
        if unknown_reveals:
            problems.append(
                f"{src.where(task)}: property 'reveals' may name only "
                f"{', '.join(sorted(REVEALS))}, not {', '.join(sorted(unknown_reveals))}"
            )
        for name in EXPRESSION_PROPERTIES:
            if name in props:
                problems += _check_python(src, task, props[name], f"property '{name}'")
        if "form" in props and props["form"] not in FORMS:
            problems.append(f"{src.where(task)}: unknown form '{props['form']}'")
        # A literal position is checked here; an expression (reviewer['position']) at run time.
        literal = props.get("position", "")
        position = literal.strip("'\"") if literal[:1] in "'\"" and literal[:1] else ""
        if position and position not in {k.value for k in PositionKind}:
            problems.append(f"{src.where(task)}: unknown position '{position}'")
    return problems


def _dmn_ns(src: _Source) -> str | None:
    root_ns = etree.QName(src.tree.getroot()).namespace
    return root_ns if root_ns in DMN_NAMESPACES else None


def _check_dmn(src: _Source, ns_uri: str) -> list[str]:
    problems: list[str] = []
    ns = {"dmn": ns_uri}
    for table in src.tree.iterfind(".//dmn:decisionTable", ns):
        readable = True
        for rule in table.findall("dmn:rule", ns):
            entries = [
                (e.findtext("dmn:text", "", ns) or "").strip()
                for e in rule.findall("dmn:inputEntry", ns)
            ]
            for text in entries:
                if text in ("", "-"):
                    continue
                expr = text.replace("?", "_x")
                if expr.startswith(DMN_OPERATORS):
                    expr = "_x " + expr
                found = _check_python(src, rule, expr, "input entry")
                readable = readable and not found
                problems += found
            for out in rule.findall("dmn:outputEntry", ns):
                problems += _check_python(
                    src, rule, out.findtext("dmn:text", "", ns) or "None", "output entry"
                )
        if readable:
            # SpiffWorkflow sets no output when no rule matches and lets the first of two
            # matching rules win even under UNIQUE: gaps and overlaps must be caught here.
            problems += table_problems(table, ns, src.where(table))
    return problems


def _located(src_by_path: dict[str, _Source], exc: ValidationException) -> str:
    src = src_by_path.get(exc.file_name or "")
    if src is None:
        return f"{exc.file_name}: element '{exc.id}': {exc}"
    return f"{src.where(src.find_id(exc.id), exc.id)}: {exc}"


@dataclass
class Bundle:
    processes: dict[str, tuple[dict, dict[str, str]]]  # id -> (serialized specs, sources)
    calls: list[tuple[str, str]]  # (where, called process id) of every detached call


_CALLED_DECISION = "bpmn:extensionElements/spiff:calledDecisionId"


def _called_tables(
    src: _Source, parser: SpiffBpmnParser, by_path: dict[str, _Source]
) -> dict[str, str]:
    """The decision tables `src`'s business rule tasks call (file name -> text), found as the
    parser resolved them. A process's version covers these and its own file, not every table
    deployed beside it: otherwise deploying one .bpmn alone, or a directory with a changed
    table, made new versions of processes whose content had not changed."""
    ns = {"bpmn": BPMN, "spiff": SPIFF}
    tables = {}
    for ref in src.tree.iterfind(f".//bpmn:businessRuleTask/{_CALLED_DECISION}", ns):
        table = by_path[parser.dmn_parsers[(ref.text or "").strip()].filename]
        tables[Path(table.path).name] = table.text
    return tables


def parse_bundle(paths: Iterable[Path]) -> Bundle:
    """Validate every file; return the parsed processes or raise one DeployError listing every
    problem in every file."""
    sources: list[_Source] = []
    problems: list[str] = []
    for path in sorted(paths):
        try:
            sources.append(_read(path))
        except DeployError as exc:
            problems += exc.problems
    parser = new_parser()
    by_path = {s.path: s for s in sources}
    bpmn_sources, dmn_sources = [], []
    for src in sources:
        dmn_ns = _dmn_ns(src)
        if dmn_ns:
            dmn_sources.append(src)
            problems += _check_dmn(src, dmn_ns)
        elif etree.QName(src.tree.getroot()).namespace == BPMN:
            bpmn_sources.append(src)
            problems += _check_bpmn(src)
        else:
            problems.append(f"{src.path}:1: neither a BPMN nor a DMN document")
    for src in dmn_sources + bpmn_sources:
        try:
            if src in dmn_sources:
                parser.add_dmn_xml(src.tree.getroot(), filename=src.path)
            else:
                parser.add_bpmn_xml(src.tree, filename=src.path)
        except ValidationException as exc:
            problems.append(_located(by_path, exc))
    if problems:
        raise DeployError(problems)

    result: dict[str, tuple[dict, dict[str, str]]] = {}
    for src in bpmn_sources:
        process_id = Path(src.path).stem
        if process_id not in parser.get_process_ids():
            problems.append(
                f"{src.path}: no executable process with id '{process_id}' "
                "(the file name is the process id)"
            )
            continue
        try:
            spec = parser.get_spec(process_id)
            subs = parser.get_subprocess_specs(process_id)
        except ValidationException as exc:
            problems.append(_located(by_path, exc))
            continue
        result[process_id] = (
            specs_to_dict(spec, subs),
            {Path(src.path).name: src.text, **_called_tables(src, parser, by_path)},
        )
    if problems:
        raise DeployError(problems)
    return Bundle(result, [call for src in bpmn_sources for call in src.calls])


def content_hash(process_id: str, sources: dict[str, str]) -> str:
    digest = hashlib.sha256(process_id.encode())
    for name in sorted(sources):
        digest.update(b"\0" + name.encode() + b"\0" + sources[name].encode())
    return digest.hexdigest()


def deploy(session: Session, paths: Iterable[Path], deployed_by: str = "") -> list[Deployed]:
    """Deploy every process in `paths`; nothing is stored unless every file is valid."""
    bundle = parse_bundle(paths)
    deployed = set(session.scalars(select(ProcessVersion.process_id).distinct()))
    missing = [
        f"{where}: calls process '{called}', which is neither in this deployment nor deployed"
        for where, called in bundle.calls
        if called not in bundle.processes and called not in deployed
    ]
    if missing:
        raise DeployError(missing)
    results = []
    for process_id, (spec, sources) in sorted(bundle.processes.items()):
        digest = content_hash(process_id, sources)
        existing = session.scalar(
            select(ProcessVersion).where(ProcessVersion.content_hash == digest)
        )
        if existing is None:
            # Versions stored before 2026-11-26 hashed every table deployed beside the process.
            newest = latest_version(session, process_id)
            if newest is not None and all(
                newest.sources.get(name) == text for name, text in sources.items()
            ):
                existing = newest
        if existing is not None:
            results.append(Deployed(process_id, existing.version, created=False))
            continue
        latest = (
            session.scalar(
                select(func.max(ProcessVersion.version)).where(
                    ProcessVersion.process_id == process_id
                )
            )
            or 0
        )
        session.add(
            ProcessVersion(
                process_id=process_id,
                version=latest + 1,
                content_hash=digest,
                sources=sources,
                spec=spec,
                deployed_by=deployed_by,
            )
        )
        results.append(Deployed(process_id, latest + 1, created=True))
    session.flush()
    session.info.pop("duban.versions", None)  # starts later in this transaction use the new ones
    return results


def deploy_directory(session: Session, directory: Path, deployed_by: str = "") -> list[Deployed]:
    return deploy(session, process_files([directory]), deployed_by)


def process_files(paths: list[Path]) -> list[Path]:
    """The files to deploy: each file as given, each directory's .bpmn and .dmn files."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        inside = sorted([*path.glob("*.bpmn"), *path.glob("*.dmn")])
        if not inside:
            raise DeployError([f"{path}: no .bpmn or .dmn files"])
        found += inside
    return found


def latest_version(session: Session, process_id: str) -> ProcessVersion | None:
    return session.scalar(
        select(ProcessVersion)
        .where(ProcessVersion.process_id == process_id)
        .order_by(ProcessVersion.version.desc())
        .limit(1)
    )
