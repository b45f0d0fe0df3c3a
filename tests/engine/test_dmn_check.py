"""Gap and overlap analysis of decision tables, through the deploy validation (parse_bundle)."""

from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from engine.deploy import parse_bundle
from engine.errors import DeployError

NS = "https://www.omg.org/spec/DMN/20191111/MODEL/"
UNSUPPORTED = (
    "is not a form duban can check for gaps and overlaps "
    "(use -, literals, comparisons or a <= ? < b)"
)

AMOUNT = [("amount", None)]
KIND_ABC = [("kind", '"a","b","c"')]


def _dmn(inputs: list[tuple[str, str | None]], rules: list[list[str]], hit_policy: str = "") -> str:
    """One decision table (on line 4); each input is (expression, inputValues or None), its
    label the expression; rule n has id rn."""
    policy = f' hitPolicy="{hit_policy}"' if hit_policy else ""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<definitions xmlns="{NS}" id="defs" name="d" namespace="n">',
        '  <decision id="rate" name="rate">',
        f'    <decisionTable id="rate_table"{policy}>',
    ]
    for i, (expression, values) in enumerate(inputs):
        allowed = f"<inputValues><text>{escape(values)}</text></inputValues>" if values else ""
        lines.append(
            f'      <input id="in{i}" label="{expression}"><inputExpression>'
            f"<text>{expression}</text></inputExpression>{allowed}</input>"
        )
    lines.append('      <output id="out" name="rate" typeRef="number" />')
    for n, entries in enumerate(rules, 1):
        cells = "".join(f"<inputEntry><text>{escape(e)}</text></inputEntry>" for e in entries)
        lines.append(
            f'      <rule id="r{n}">{cells}<outputEntry><text>{n}</text></outputEntry></rule>'
        )
    lines += ["    </decisionTable>", "  </decision>", "</definitions>", ""]
    return "\n".join(lines)


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "rate.dmn"
    path.write_text(text, encoding="utf-8")
    try:
        parse_bundle([path])
    except DeployError as exc:
        prefix = f"{path}:4: element 'rate_table': "
        assert all(p.startswith(prefix) for p in exc.problems), exc.problems
        return [p.removeprefix(prefix) for p in exc.problems]
    return []


def test_a_complete_unique_table_passes(tmp_path):
    rules = [
        ['"a"', "< 1000"],
        ['"a"', "1000 <= ? < 5000"],
        ['"a"', ">= 5000"],
        ['? in ("b", "c")', "-"],
    ]
    assert _problems(tmp_path, _dmn([*KIND_ABC, *AMOUNT], rules)) == []


def test_a_missing_boundary_point_is_a_gap(tmp_path):
    assert _problems(tmp_path, _dmn(AMOUNT, [["< 1000"], ["> 1000"]])) == [
        "decision table 'rate_table': no rule matches amount = 1000; add a rule or widen one"
    ]


def test_a_missing_interval_is_a_gap(tmp_path):
    assert _problems(tmp_path, _dmn(AMOUNT, [["< 0"], ["0 <= ? < 10"], ["== 20"], ["> 20"]])) == [
        "decision table 'rate_table': no rule matches amount = 10; add a rule or widen one",
        "decision table 'rate_table': no rule matches 10 < amount < 20; add a rule or widen one",
    ]


def test_an_allowed_value_no_rule_takes_is_a_gap(tmp_path):
    assert _problems(tmp_path, _dmn(KIND_ABC, [['"a"'], ["'b'"]])) == [
        "decision table 'rate_table': no rule matches kind = \"c\"; add a rule or widen one"
    ]


def test_without_allowed_values_any_other_string_is_a_gap(tmp_path):
    assert _problems(tmp_path, _dmn([("kind", None)], [['"a"'], ['"b"']])) == [
        "decision table 'rate_table': no rule matches kind = any other string; "
        "add a rule or widen one"
    ]
    complete = [['"a"'], ['? not in ("a",)']]
    assert _problems(tmp_path, _dmn([("kind", None)], complete)) == []


def test_a_gap_in_one_combination_of_two_inputs(tmp_path):
    rules = [['"a"', "True"], ['"a"', "False"], ['"b"', "-"], ['"c"', "True"]]
    assert _problems(tmp_path, _dmn([*KIND_ABC, ("urgent", None)], rules)) == [
        "decision table 'rate_table': no rule matches kind = \"c\", urgent = False; "
        "add a rule or widen one"
    ]


def test_overlaps_are_refused_under_unique_only(tmp_path):
    rules = [["< 1000"], ["1000 <= ? < 5000"], ["-"], [">= 4000"]]
    expected = [
        "decision table 'rate_table': rules 1 (r1) and 3 (r3) both match amount < 1000 "
        "(hit policy UNIQUE)",
        "decision table 'rate_table': rules 2 (r2) and 3 (r3) both match amount = 1000 "
        "(hit policy UNIQUE)",
        "decision table 'rate_table': rules 2 (r2) and 4 (r4) both match amount = 4000 "
        "(hit policy UNIQUE)",
        "decision table 'rate_table': … and 1 more overlap",
    ]
    assert _problems(tmp_path, _dmn(AMOUNT, rules)) == expected  # UNIQUE is the default
    assert _problems(tmp_path, _dmn(AMOUNT, rules, "UNIQUE")) == expected
    for policy in ("FIRST", "PRIORITY", "COLLECT"):
        assert _problems(tmp_path, _dmn(AMOUNT, rules, policy)) == []


def test_a_catch_all_last_rule_under_first_closes_every_gap(tmp_path):
    rules = [['"a"', "< 1000"], ['"b"', "> 5000"], ["-", "-"]]
    assert _problems(tmp_path, _dmn([("kind", None), ("amount", None)], rules, "FIRST")) == []
    # COLLECT returns an empty list when nothing matches: a gap is no problem there.
    assert _problems(tmp_path, _dmn(AMOUNT, [["< 0"]], "COLLECT")) == []


def test_at_most_three_gaps_are_listed(tmp_path):
    assert _problems(tmp_path, _dmn(AMOUNT, [["1"], ["2"], ["3"], ["4"]])) == [
        "decision table 'rate_table': no rule matches amount < 1; add a rule or widen one",
        "decision table 'rate_table': no rule matches 1 < amount < 2; add a rule or widen one",
        "decision table 'rate_table': no rule matches 2 < amount < 3; add a rule or widen one",
        "decision table 'rate_table': … and 2 more gaps",
    ]


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("len(?) > 3", UNSUPPORTED),
        ('< "m"', UNSUPPORTED),
        ('? in "abc"', UNSUPPORTED),  # a substring test, not a set of values
        (
            '"a","b"',
            "is compared with the input as one tuple by SpiffWorkflow and never matches; "
            'write ? in ("a","b")',
        ),
        (
            'in ("a", "b")',
            'is joined to the input expression by SpiffWorkflow as \'kindin ("a", "b")\', '
            'which fails at run time; write ? in ("a", "b")',
        ),
        (
            ' "a"',
            "has spaces or line breaks around it that SpiffWorkflow cannot evaluate; remove them",
        ),
    ],
)
def test_entries_duban_cannot_read_are_reported(tmp_path, entry, why):
    rules = [["-", "< 0"], [entry, ">= 0"]]
    assert _problems(tmp_path, _dmn([("kind", None), *AMOUNT], rules)) == [
        f"rule 2 (r2), input 'kind': entry {entry!r} {why}"
    ]


def test_a_column_mixing_strings_and_numbers_is_reported(tmp_path):
    assert _problems(tmp_path, _dmn([("kind", None)], [['"a"'], ["5"], ["-"]], "FIRST")) == [
        "input 'kind' mixes number and string values, so duban cannot check it for gaps "
        "and overlaps"
    ]


def test_a_string_outside_the_allowed_values_is_reported(tmp_path):
    assert _problems(tmp_path, _dmn(KIND_ABC, [['"a"'], ['? in ("b", "cc")'], ['"c"']])) == [
        'rule 2 (r2), input \'kind\': entry \'? in ("b", "cc")\' mentions "cc", which is not '
        "among the input's allowed values"
    ]


def test_a_table_too_large_to_walk_is_refused(tmp_path):
    inputs = [(f"x{i}", None) for i in range(5)]
    rules = [[f"== {n}"] * 5 for n in range(6)]  # 13 atoms per input: 13**5 cells
    assert _problems(tmp_path, _dmn(inputs, rules)) == [
        "decision table 'rate_table': its inputs split into 371293 combinations, more than "
        "the 100000 duban checks for gaps and overlaps; split the table"
    ]
