"""Deploy-time gap and overlap analysis of DMN decision tables.

SpiffWorkflow 3.2 evaluates each input entry as Python, sets no output at all when no rule
matches and never enforces hit policy UNIQUE (the first matching rule wins silently). So duban
reads every entry as a set over its input's domain, splits each domain into atoms (boundary
points and the intervals between them, or single values), and walks the product of the atoms:
a cell no rule matches is a gap, a cell two rules match is an overlap."""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import pairwise
from typing import Any

from lxml import etree

MAX_CELLS = 100_000
# Checking costs rules × atoms (and rules² for overlaps): bounded, so that a 2 MB table of
# thousands of rules is refused in a moment instead of holding a worker for minutes.
MAX_RULES = 1_000
MAX_MATCHES = 1_000_000
MAX_REPORTED = 3
UNSUPPORTED = (
    "is not a form duban can check for gaps and overlaps "
    "(use -, literals, comparisons or a <= ? < b)"
)
# SpiffWorkflow's own pattern: a '?' outside quotes stands for the input.
QUESTION_MARK = re.compile(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)")
PLACEHOLDER = "_dmn_input_"

Value = str | bool | int | float
Atom = tuple[object, str]  # (representative value, description; "" for an unsplit column)

OPERATORS: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


OTHER = object()  # stands for every string a table does not mention: equal to none of them


@dataclass(frozen=True)
class _Test:
    op: type[ast.cmpop]
    operand: Value | tuple[Value, ...]
    input_left: bool  # '? < 5' rather than '5 < ?'

    def __call__(self, value: object) -> bool:
        a, b = (value, self.operand) if self.input_left else (self.operand, value)
        return bool(OPERATORS[self.op](a, b))


@dataclass(frozen=True)
class _Entry:
    tests: tuple[_Test, ...] = ()  # all must hold; none means any value
    values: tuple[Value, ...] = ()  # the literals it mentions: they split the domain

    def matches(self, value: object) -> bool:
        return all(test(value) for test in self.tests)


@dataclass
class _Column:
    label: str
    expression: str | None
    allowed: tuple[Value, ...] | None
    entries: list[_Entry] = field(default_factory=list)


def _literal(node: ast.expr) -> Value | None:
    # Signs are unwound in a loop: an entry of a thousand minus signs must not exhaust the stack.
    sign = 0  # 0: no sign at all, else +1 or -1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = (sign or 1) * (-1 if isinstance(node.op, ast.USub) else 1)
        node = node.operand
    if sign:
        inner = _literal(node)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner if sign < 0 else inner
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float):
        value = node.value
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    return None


def _literals(node: ast.expr) -> tuple[Value, ...] | None:
    """A literal or a tuple/list/set of literals, as a tuple; None for anything else."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    values = [_literal(item) for item in items]
    return None if any(v is None for v in values) else tuple(v for v in values if v is not None)


def _parse(expr: str) -> ast.expr | None:
    try:
        return ast.parse(expr, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the last two: deep nesting
        return None


def _comparison(node: ast.expr | None) -> _Entry | None:
    """A comparison chain in which every link compares the input with literals."""
    if not isinstance(node, ast.Compare):
        return None
    operands = [node.left, *node.comparators]
    tests: list[_Test] = []
    values: list[Value] = []
    for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
        is_input = [isinstance(n, ast.Name) and n.id == PLACEHOLDER for n in (left, right)]
        if is_input.count(True) != 1:
            return None
        other = right if is_input[0] else left
        if isinstance(op, ast.In | ast.NotIn):
            # 'x in "abc"' would test substrings: only a collection of literals is a set.
            members = (
                _literals(other) if isinstance(other, ast.Tuple | ast.List | ast.Set) else None
            )
            if members is None or not is_input[0]:
                return None
            tests.append(_Test(type(op), members, True))
            values += members
            continue
        literal = _literal(other)
        if literal is None or (isinstance(op, ORDERING) and isinstance(literal, str | bool)):
            return None
        tests.append(_Test(type(op), literal, is_input[0]))
        values.append(literal)
    return _Entry(tuple(tests), tuple(values))


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _entry(raw: str | None, expression: str | None) -> _Entry | str:
    """What an input entry matches, read the way SpiffWorkflow 3.2's DMNEngine.evaluate reads
    it, or why duban cannot check it."""
    if raw is None or raw == "-":
        return _Entry()
    if QUESTION_MARK.search(raw):
        # evaluated on its own, '?' bound to the input; eval() drops leading spaces and tabs.
        found = _comparison(_parse(QUESTION_MARK.sub(PLACEHOLDER, raw).lstrip(" \t")))
        return found or UNSUPPORTED
    if _parses(raw):
        # SpiffWorkflow evaluates '(input) == (entry)'.
        node = _parse(f"({raw})")
        if node is not None and (value := _literal(node)) is not None:
            return _Entry((_Test(ast.Eq, value, True),), (value,))
        if isinstance(node, ast.Tuple) and _literals(node):
            return (
                "is compared with the input as one tuple by SpiffWorkflow and never matches; "
                f"write ? in ({raw.strip()})"
            )
        return UNSUPPORTED
    if _parses(f"v {raw}"):
        # SpiffWorkflow evaluates 'input' + 'entry' with no space in between.
        if expression and _word_char(expression[-1]) and _word_char(raw[0]):
            return (
                f"is joined to the input expression by SpiffWorkflow as {expression + raw!r}, "
                f"which fails at run time; write ? {raw}"
            )
        return _comparison(_parse(f"{PLACEHOLDER} {raw}")) or UNSUPPORTED
    if raw.strip() == "-" or _parses(raw.strip()) or _parses(f"v {raw.strip()}"):
        return "has spaces or line breaks around it that SpiffWorkflow cannot evaluate; remove them"
    return UNSUPPORTED


def _word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else str(value)


def _kind(value: Value) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _atoms(column: _Column) -> list[Atom]:
    label = column.label
    values = [v for entry in column.entries for v in entry.values]
    if not values:
        return [(None, "")]  # every rule takes any value (or none): nothing to split
    if column.allowed is not None:
        return [(v, f"{label} = {_show(v)}") for v in dict.fromkeys(column.allowed)]
    if all(isinstance(v, bool) for v in values):
        return [(True, f"{label} = True"), (False, f"{label} = False")]
    if all(isinstance(v, str) for v in values):
        strings = [(v, f"{label} = {_show(v)}") for v in dict.fromkeys(values)]
        return [*strings, (OTHER, f"{label} = any other string")]
    points = sorted(set(values))
    # Numbers: each boundary point, and the open intervals around and between them; any
    # value inside one interval is matched by exactly the same rules as its representative.
    atoms: list[Atom] = [(Fraction(points[0]) - 1, f"{label} < {_show(points[0])}")]
    for low, high in pairwise(points):
        atoms.append((low, f"{label} = {_show(low)}"))
        middle = (Fraction(low) + Fraction(high)) / 2
        atoms.append((middle, f"{_show(low)} < {label} < {_show(high)}"))
    atoms.append((points[-1], f"{label} = {_show(points[-1])}"))
    atoms.append((Fraction(points[-1]) + 1, f"{label} > {_show(points[-1])}"))
    return atoms


def _column(input_el: etree._Element, ns: Mapping[str, str]) -> tuple[_Column, str | None]:
    expression = input_el.findtext("dmn:inputExpression/dmn:text", None, ns)
    label = input_el.get("label") or (expression or "").strip() or input_el.get("id", "?")
    allowed_text = (input_el.findtext("dmn:inputValues/dmn:text", "", ns) or "").strip()
    if not allowed_text:
        return _Column(label, expression, None), None
    node = _parse(allowed_text)
    allowed = _literals(node) if node is not None else None
    if not allowed:
        return _Column(label, expression, None), (
            f"input '{label}': allowed values (inputValues) {allowed_text!r} are not a "
            "comma-separated list of literals duban can read"
        )
    return _Column(label, expression, allowed), None


def _rule_name(number: int, rule: etree._Element) -> str:
    return f"{number} ({rule.get('id')})" if rule.get("id") else str(number)


def _describe(atoms: list[Atom]) -> str:
    return ", ".join(description for _, description in atoms if description) or "any input"


def _more(where: str, table: str, extra: int, what: tuple[str, str]) -> list[str]:
    noun = what[0] if extra == 1 else what[1]
    return [f"{where}: decision table '{table}': … and {extra} more {noun}"] if extra > 0 else []


def table_problems(table: etree._Element, ns: Mapping[str, str], where: str) -> list[str]:
    """Problems of one <decisionTable>: entries duban cannot read, gaps (unless the hit policy
    is COLLECT) and, under hit policy UNIQUE, overlaps. `ns` maps the prefix 'dmn' to the
    document's DMN namespace; every line starts with `where`."""
    table_id = table.get("id", "")
    hit_policy = table.get("hitPolicy", "UNIQUE").upper()
    columns: list[_Column] = []
    problems: list[str] = []
    for input_el in table.findall("dmn:input", ns):
        column, problem = _column(input_el, ns)
        columns.append(column)
        problems += [f"{where}: {problem}"] if problem else []
    rules = table.findall("dmn:rule", ns)
    if len(rules) > MAX_RULES:
        return [
            f"{where}: decision table '{table_id}' has {len(rules)} rules, more than the "
            f"{MAX_RULES} duban checks for gaps and overlaps; split the table"
        ]
    names = [_rule_name(n, rule) for n, rule in enumerate(rules, 1)]
    for name, rule in zip(names, rules, strict=True):
        texts = [e.find("dmn:text", ns) for e in rule.findall("dmn:inputEntry", ns)]
        if len(texts) != len(columns):
            problems.append(
                f"{where}: rule {name} has {len(texts)} input entries for {len(columns)} inputs"
            )
            continue
        for column, text_el in zip(columns, texts, strict=True):
            raw = text_el.text if text_el is not None else None
            entry = _entry(raw, column.expression)
            if isinstance(entry, str):
                problems.append(
                    f"{where}: rule {name}, input '{column.label}': entry {raw!r} {entry}"
                )
                entry = _Entry()
            elif column.allowed is not None:
                problems += [
                    f"{where}: rule {name}, input '{column.label}': entry {raw!r} mentions "
                    f"{_show(v)}, which is not among the input's allowed values"
                    for v in entry.values
                    if isinstance(v, str) and v not in column.allowed
                ]
            column.entries.append(entry)
    for column in columns:
        values = [v for entry in column.entries for v in entry.values]
        kinds = sorted({_kind(v) for v in [*values, *(column.allowed or ())]})
        if len(kinds) > 1:
            problems.append(
                f"{where}: input '{column.label}' mixes {' and '.join(kinds)} values, "
                "so duban cannot check it for gaps and overlaps"
            )
    if problems or hit_policy == "COLLECT":
        return problems  # COLLECT returns an empty list on no match: gaps and overlaps are fine

    atoms = [_atoms(column) for column in columns]
    cells = math.prod(len(a) for a in atoms)
    if cells > MAX_CELLS:
        return [
            f"{where}: decision table '{table_id}': its inputs split into {cells} combinations, "
            f"more than the {MAX_CELLS} duban checks for gaps and overlaps; split the table"
        ]
    if len(rules) * sum(map(len, atoms)) > MAX_MATCHES:
        return [
            f"{where}: decision table '{table_id}': its {len(rules)} rules mention too many "
            "distinct values for duban to check for gaps and overlaps; split the table"
        ]
    # matches[c][r]: bit set of the atoms of column c that rule r's entry matches.
    matches = [
        [
            sum(1 << i for i, (value, _) in enumerate(col_atoms) if entry.matches(value))
            for entry in column.entries
        ]
        for column, col_atoms in zip(columns, atoms, strict=True)
    ]
    problems += _gaps(where, table_id, atoms, matches, len(rules))
    if hit_policy == "UNIQUE":
        problems += _overlaps(where, table_id, atoms, matches, names)
    return problems


def _gaps(
    where: str, table_id: str, atoms: list[list[Atom]], matches: list[list[int]], n_rules: int
) -> list[str]:
    # by_atom[c][i]: bit set of the rules that match atom i of column c.
    by_atom = [
        [sum(1 << r for r, bits in enumerate(col) if bits >> i & 1) for i in range(len(col_atoms))]
        for col, col_atoms in zip(matches, atoms, strict=True)
    ]
    gaps: list[list[Atom]] = []

    def walk(depth: int, rules: int, path: list[Atom]) -> None:
        if rules == 0:
            gaps.append(path)  # no rule left, whatever the later inputs: one gap
        elif depth < len(atoms):
            for atom, bits in zip(atoms[depth], by_atom[depth], strict=True):
                walk(depth + 1, rules & bits, [*path, atom])

    walk(0, (1 << n_rules) - 1, [])
    return [
        f"{where}: decision table '{table_id}': no rule matches {_describe(path)}; "
        "add a rule or widen one"
        for path in gaps[:MAX_REPORTED]
    ] + _more(where, table_id, len(gaps) - MAX_REPORTED, ("gap", "gaps"))


def _overlaps(
    where: str, table_id: str, atoms: list[list[Atom]], matches: list[list[int]], names: list[str]
) -> list[str]:
    # Two rules share a cell exactly when their entries share an atom in every column.
    pairs = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            shared = [col[a] & col[b] for col in matches]
            if all(shared):
                cell = [
                    col_atoms[(bits & -bits).bit_length() - 1]
                    for bits, col_atoms in zip(shared, atoms, strict=True)
                ]
                pairs.append(
                    f"{where}: decision table '{table_id}': rules {names[a]} and {names[b]} "
                    f"both match {_describe(cell)} (hit policy UNIQUE)"
                )
    return pairs[:MAX_REPORTED] + _more(
        where, table_id, len(pairs) - MAX_REPORTED, ("overlap", "overlaps")
    )
