import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.deploy import deploy, deploy_directory
from engine.errors import DeployError
from engine.models import Instance, ProcessVersion
from engine.routing import hand_out
from tests.conftest import PROCESSES

ROUTING = PROCESSES / "task_routing.bpmn"

MINIMAL = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="{pid}" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work" />
    <bpmn:scriptTask id="work"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script>
    </bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end" />
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_same_content_is_stored_once_and_changes_make_versions(sessions, tmp_path):
    path = _write(tmp_path, "demo.bpmn", MINIMAL.format(pid="demo", script="x = 1"))
    with sessions.begin() as s:
        first = deploy(s, [path])
        again = deploy(s, [path])
    assert [(d.version, d.created) for d in first + again] == [(1, True), (1, False)]
    _write(tmp_path, "demo.bpmn", MINIMAL.format(pid="demo", script="x = 2"))
    with sessions.begin() as s:
        changed = deploy(s, [path])
        assert [(d.version, d.created) for d in changed] == [(2, True)]
        assert len(s.scalars(select(ProcessVersion)).all()) == 2


def test_running_instances_stay_on_their_version(seeded, clock, tmp_path):
    with seeded.begin() as s:
        (old,) = hand_out(s, "weixi-2023-15", [7], clock())
    copy = tmp_path / "task_routing.bpmn"
    shutil.copy(ROUTING, copy)
    copy.write_text(
        copy.read_text(encoding="utf-8").replace('name="汇总反馈"', 'name="汇总"'), encoding="utf-8"
    )
    with seeded.begin() as s:
        (v2,) = deploy(s, [copy])
        (new,) = hand_out(s, "weixi-2023-15", [8], clock())
    assert v2.version == 2
    with seeded() as s:
        assert s.get(Instance, old.id).version.version == 1
        assert s.get(Instance, new.id).version.version == 2
    from tests.helpers import drive

    assert drive(seeded, clock, old.id) > 0
    with seeded() as s:
        assert s.get(Instance, old.id).status.value == "completed"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<bpmn:definitions", "demo.bpmn:1: malformed XML"),
        (
            MINIMAL.format(pid="demo", script="x = = 1"),
            "demo.bpmn:7: element 'work': script is not",
        ),
        (MINIMAL.format(pid="other", script="x = 1"), "no executable process with id 'demo'"),
    ],
)
def test_broken_files_are_located(sessions, tmp_path, text, expected):
    path = _write(tmp_path, "demo.bpmn", text)
    with pytest.raises(DeployError) as err, sessions.begin() as s:
        deploy(s, [path])
    assert expected in str(err.value)
    with sessions() as s:
        assert s.scalars(select(ProcessVersion)).all() == []


def _processes_with(tmp_path: Path, name: str, old: str, new: str) -> list[Path]:
    """All shipped processes, one of them changed."""
    paths = []
    for source in sorted(PROCESSES.glob("*.bpmn")):
        text = source.read_text(encoding="utf-8")
        if source.name == name:
            assert old in text
            text = text.replace(old, new, 1)
        paths.append(_write(tmp_path, source.name, text))
    return paths


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        (
            "unit_contribution.bpmn",
            "action == 'request_extension'</bpmn:conditionExpression>",
            "action === 'x'</bpmn:conditionExpression>",
            "unit_contribution.bpmn:30: element 'c_ext': condition is not valid",
        ),
        (
            "unit_acknowledgement.bpmn",
            '<spiffworkflow:property name="due" value="due"/>',
            '<spiffworkflow:property name="due" value="due +"/>',
            "unit_acknowledgement.bpmn:9: element 'acknowledge': property 'due' is not valid",
        ),
        (
            "task_routing.bpmn",
            '<spiffworkflow:property name="form" value="plan"/>',
            '<spiffworkflow:property name="form" value="nonsense" />',
            "element 'set_plan': unknown form 'nonsense'",
        ),
        (
            "task_routing.bpmn",
            '<spiffworkflow:property name="form" value="review"/>',
            "",
            "element 'review': user task lacks properties form",
        ),
        (
            "task_routing.bpmn",
            '<spiffworkflow:property name="inputs"',
            '<spiffworkflow:property name="inputz"',
            "element 'acknowledgements': a manual task is a detached call and needs",
        ),
        ("task_routing.bpmn", 'targetRef="review"/>', 'targetRef="nowhere"/>', "nowhere"),
    ],
)
def test_problems_the_parser_leaves_to_run_time_are_caught_at_deploy(
    sessions, tmp_path, name, old, new, expected
):
    paths = _processes_with(tmp_path, name, old, new)
    with pytest.raises(DeployError) as err, sessions.begin() as s:
        deploy(s, paths)
    assert expected in str(err.value)
    assert f"{name}:" in str(err.value)
    with sessions() as s:
        assert s.scalars(select(ProcessVersion)).all() == []


def test_a_call_to_a_process_nobody_deployed_is_refused(sessions, tmp_path):
    path = _write(tmp_path, "task_routing.bpmn", ROUTING.read_text(encoding="utf-8"))
    with pytest.raises(DeployError) as err, sessions.begin() as s:
        deploy(s, [path])
    assert "element 'contributions': calls process 'unit_contribution', which is neither" in (
        str(err.value)
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("P3D", "timer timeDuration P3D is read as a variable name; write the ISO value in quotes"),
        ("'P3X'", "timer timeDuration 'P3X' is not a valid ISO 8601 value"),
        ("'P3D' +", "timer timeDuration is not valid Python"),
    ],
)
def test_timer_expressions_are_checked(sessions, tmp_path, expr, expected):
    timer = MINIMAL.format(pid="demo", script="x = 1").replace(
        '<bpmn:endEvent id="end">',
        '<bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition>'
        f"<bpmn:timeDuration>{expr}</bpmn:timeDuration></bpmn:timerEventDefinition>"
        '</bpmn:intermediateCatchEvent><bpmn:endEvent id="end">',
    )
    path = _write(tmp_path, "demo.bpmn", timer)
    with (
        pytest.raises(DeployError, match=f"element 'wait': {re.escape(expected)}"),
        sessions.begin() as s,
    ):
        deploy(s, [path])


DMN = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="n">
  <decision id="rate" name="rate">
    <decisionTable id="rate_table" hitPolicy="FIRST">
      <input id="i1">
        <inputExpression id="e1" typeRef="string"><text>kind</text></inputExpression></input>
      <output id="o1" name="rate" typeRef="number" />
      <rule id="r1"><inputEntry id="r1i"><text>"near_low_income"</text></inputEntry>
        <outputEntry id="r1o"><text>0.7</text></outputEntry></rule>
      {extra}
    </decisionTable>
  </decision>
</definitions>
"""


def test_a_decision_table_with_a_gap_is_refused(sessions, tmp_path):
    path = _write(tmp_path, "rate.dmn", DMN.format(extra=""))
    with pytest.raises(DeployError) as err, sessions.begin() as s:
        deploy(s, [path])
    assert err.value.problems == [
        f"{path}:4: element 'rate_table': decision table 'rate_table': no rule matches "
        "kind = any other string; add a rule or widen one"
    ]
    catch_all = (
        '<rule id="r2"><inputEntry id="r2i"><text>-</text></inputEntry>'
        '<outputEntry id="r2o"><text>0</text></outputEntry></rule>'
    )
    _write(tmp_path, "rate.dmn", DMN.format(extra=catch_all))
    with sessions.begin() as s:
        assert deploy(s, [path]) == []  # under FIRST a last all-'-' rule closes every gap
    bad_entry = DMN.format(extra=catch_all).replace('"near_low_income"', '"near_low_income')
    _write(tmp_path, "rate.dmn", bad_entry)
    with (
        pytest.raises(DeployError, match="element 'r1': input entry is not valid"),
        sessions.begin() as s,
    ):
        deploy(s, [path])


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>',
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    ],
)
def test_entities_and_doctypes_are_refused(sessions, tmp_path, doctype):
    text = MINIMAL.format(pid="demo", script="x = 1").replace(
        "<bpmn:definitions", doctype + "\n<bpmn:definitions", 1
    )
    path = _write(tmp_path, "demo.bpmn", text)
    with pytest.raises(DeployError, match="DOCTYPE is not allowed"), sessions.begin() as s:
        deploy(s, [path])


def test_the_shipped_processes_deploy(sessions):
    with sessions.begin() as s:
        assert [d.process_id for d in deploy_directory(s, PROCESSES)] == [
            "indicator_report",
            "medical_assistance",
            "meeting_minutes",
            "task_routing",
            "unit_acknowledgement",
            "unit_contribution",
            "unit_progress",
        ]


def test_a_process_is_versioned_with_the_tables_it_calls_not_those_beside_it(sessions, tmp_path):
    with sessions.begin() as s:
        deploy_directory(s, PROCESSES)
        alone = deploy(s, [ROUTING])  # the same file without the directory's decision table
    assert [(d.process_id, d.version, d.created) for d in alone] == [("task_routing", 1, False)]
    copy = tmp_path / "processes"
    shutil.copytree(PROCESSES, copy)
    rates = copy / "medical_aid_rates.dmn"
    text = rates.read_text(encoding="utf-8")
    assert "医疗救助比例和封顶线" in text
    rates.write_text(text.replace("医疗救助比例和封顶线", "医疗救助比例与封顶线"), encoding="utf-8")
    with sessions.begin() as s:
        changed = {d.process_id: (d.version, d.created) for d in deploy_directory(s, copy)}
    assert changed["medical_assistance"] == (2, True)  # it calls the table
    assert changed["task_routing"] == (1, False)  # it does not


def test_versions_stored_with_every_table_beside_them_are_still_recognised(sessions):
    """Before 2026-11-26 a version's sources held every decision table of its deployment."""
    with sessions.begin() as s:
        deploy_directory(s, PROCESSES)
        version = s.scalar(
            select(ProcessVersion).where(ProcessVersion.process_id == "task_routing")
        )
        rates = (PROCESSES / "medical_aid_rates.dmn").read_text(encoding="utf-8")
        version.sources = {**version.sources, "medical_aid_rates.dmn": rates}
        version.content_hash = "0" * 64  # as hashed then
    with sessions.begin() as s:
        again = {d.process_id: (d.version, d.created) for d in deploy_directory(s, PROCESSES)}
        assert again["task_routing"] == (1, False)
        assert len(s.scalars(select(ProcessVersion)).all()) == 7
