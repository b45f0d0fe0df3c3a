"""Hostile process files, through the command line and the administrators' upload: each is
refused with the file named, nothing is stored, and nothing in any file runs while deploying.

Already covered elsewhere: an entity bomb and an external entity through engine.deploy, and
broken files located by line and element (tests/engine/test_deploy.py); a broken upload and a
liaison's 403 on every admin address (tests/web/test_admin.py)."""

from __future__ import annotations

import gc
import html
import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask.testing import FlaskClient
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from duban import cli
from engine.accounts import create_account
from engine.deploy import MAX_FILE_BYTES, deploy
from engine.dmn_check import MAX_RULES
from engine.models import Person, ProcessVersion
from tests.engine.test_deploy import DMN, MINIMAL
from tests.web.conftest import PASSWORD, Someone, sign_in
from web import create_app

# Billion laughs: lol9 expands to 10⁹ "lol"s (used in the script below).
BOMB = (
    '<!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    + "]>\n"
)
EXTERNAL = '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
REMOTE_DTD = '<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">\n'
RULE = (
    '<rule id="r{n}"><inputEntry id="r{n}i"><text>"k{n}"</text></inputEntry>'
    '<outputEntry id="r{n}o"><text>{n}</text></outputEntry></rule>'
)
CATCH_ALL = (
    '<rule id="rx"><inputEntry id="rxi"><text>-</text></inputEntry>'
    '<outputEntry id="rxo"><text>0</text></outputEntry></rule>'
)


def _bpmn(script: str = "x = 1", prolog: str = "", padding: int = 0) -> bytes:
    text = MINIMAL.format(pid="demo", script=script)
    text = text.replace("<bpmn:definitions", prolog + "<bpmn:definitions", 1)
    return (text + f"<!-- {'x' * padding} -->\n" if padding else text).encode()


def _dmn(extra: str = CATCH_ALL, prolog: str = "", entry: str = '"near_low_income"') -> bytes:
    text = DMN.format(extra=extra).replace('"near_low_income"', entry)
    return text.replace("<definitions", prolog + "<definitions", 1).encode()


def _nested(depth: int) -> bytes:
    return _bpmn().replace(
        b"</bpmn:process>", b"<a>" * depth + b"</a>" * depth + b"</bpmn:process>"
    )


# (file name, content, a pattern of what the refusal says after the file's name). libxml2
# itself may stop an entity bomb ("entity amplification") before duban sees the DOCTYPE.
ENTITIES = "DOCTYPE is not allowed|malformed XML: .*[Ee]ntit"
HOSTILE = {
    "entity bomb": ("demo.bpmn", _bpmn("x = '&lol9;'", BOMB), ENTITIES),
    "external entity": ("demo.bpmn", _bpmn(prolog=EXTERNAL), ENTITIES),
    "remote DTD": ("demo.bpmn", _bpmn(prolog=REMOTE_DTD), ENTITIES),
    "DMN entity bomb": ("rate.dmn", _dmn(prolog=BOMB, entry='"&lol9;"'), ENTITIES),
    "DMN external entity": ("rate.dmn", _dmn(prolog=EXTERNAL), ENTITIES),
    "oversized BPMN": ("demo.bpmn", _bpmn(padding=MAX_FILE_BYTES), "over the limit of"),
    "oversized DMN": ("rate.dmn", _dmn() + b" " * MAX_FILE_BYTES, "over the limit of"),
    "truncated": ("demo.bpmn", _bpmn()[:300], "malformed XML"),
    "not XML": ("demo.bpmn", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "malformed XML"),
    "not a process": ("demo.bpmn", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "neither a BPMN"),
    "nested 10,000 deep": ("demo.bpmn", _nested(10_000), "malformed XML"),
    "script nested too deeply": ("demo.bpmn", _bpmn("x = " + "-" * 100_000 + "1"), "too deeply"),
    "script of 200,000 terms": ("demo.bpmn", _bpmn("x = " + "+1" * 200_000), "too deeply"),
    "DMN entry nested too deeply": ("rate.dmn", _dmn(entry="-" * 5_000 + "1"), "too deeply"),
    "DMN of too many rules": (
        "rate.dmn",
        _dmn("".join(RULE.format(n=n) for n in range(MAX_RULES + 1))),
        f"more than the {MAX_RULES}",
    ),
}


def _versions(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count(ProcessVersion.id))) or 0


@pytest.fixture
def duban(
    sessions: sessionmaker[Session],
    database_url: str,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., Result]:
    """`duban …` in-process, on the test's database (and schema), as tests/test_cli.py runs it."""
    monkeypatch.setattr(cli.Context, "engine", property(lambda self: engine))
    runner = CliRunner()
    return lambda *args: runner.invoke(
        cli.main, list(args), env={"DUBAN_DATABASE_URL": database_url}
    )


@pytest.fixture
def admin(sessions: sessionmaker[Session], tmp_path: Path) -> FlaskClient:
    """An administrator signed in to an app on an empty database: nothing to deploy against."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "WTF_CSRF_ENABLED": False,
            "DUBAN_SESSIONS": sessions,
            "ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        }
    )
    with sessions.begin() as s:
        person = Person(name="管理员")
        s.add(person)
        create_account(s, person, "root", PASSWORD, is_admin=True)
    return sign_in(app.test_client(), Someone("root", 0, None, ""))


def _upload(client: FlaskClient, files: dict[str, bytes]) -> tuple[int, str]:
    data = {"files": [(io.BytesIO(content), name) for name, content in files.items()]}
    response = client.post("/admin/deployments", data=data, content_type="multipart/form-data")
    return response.status_code, response.get_data(as_text=True)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_command_line_refuses_it_naming_the_file(
    case: str, duban: Callable[..., Result], sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    name, content, expected = HOSTILE[case]
    path = tmp_path / name
    path.write_bytes(content)
    result = duban("deploy", str(path))
    assert result.exit_code == 1, result.output
    assert f"{path}:" in result.output and re.search(expected, result.output), result.output
    assert "Traceback" not in result.output
    assert _versions(sessions) == 0


# The test client spools a request body over 500 KB to a temporary file it leaves open:
# collected inside the test, where its warning is ignored.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_the_admin_upload_refuses_it_naming_the_file(
    case: str, admin: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    name, content, expected = HOSTILE[case]
    status, page = _upload(admin, {name: content})
    assert status in (400, 413), page
    if status == 400:  # 413: over the request limit, refused before any file is read
        assert f"{name}:" in page and re.search(expected, html.unescape(page)), page
    assert _versions(sessions) == 0
    gc.collect()


def test_a_path_the_command_line_cannot_read_is_an_error_not_a_traceback(
    duban: Callable[..., Result], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a process", encoding="utf-8")
    for path, message in (
        (tmp_path / "missing.bpmn", "cannot be read"),
        (tmp_path, "no .bpmn or .dmn files"),  # a directory is read for its processes
    ):
        result = duban("deploy", str(path))
        assert result.exit_code == 1 and f"{path}: {message}" in result.output
        assert "Traceback" not in result.output


# ---------------------------------------------------------------- nothing runs at deploy time


def _evil_files(marker: Path) -> dict[str, bytes]:
    """A process whose every script, condition, timer, property and decision would create
    `marker` if anything evaluated it."""
    touch = f"__import__('os').system('touch {marker}')\nopen('{marker}', 'w').write('ran')"
    expr = f"__import__('os').system('touch {marker}') == 0"
    props = "".join(
        f'<spiffworkflow:property name="{name}" value="{value}"/>'
        for name, value in [("unit", expr), ("position", "'liaison'"), ("form", "acknowledge")]
    )
    bpmn = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="evil" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="script" />
    <bpmn:scriptTask id="script"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{touch}</bpmn:script></bpmn:scriptTask>
    <bpmn:sequenceFlow id="f2" sourceRef="script" targetRef="gate" />
    <bpmn:exclusiveGateway id="gate" default="f4"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f3</bpmn:outgoing><bpmn:outgoing>f4</bpmn:outgoing></bpmn:exclusiveGateway>
    <bpmn:sequenceFlow id="f3" sourceRef="gate" targetRef="ask">
      <bpmn:conditionExpression>{expr}</bpmn:conditionExpression></bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f4" sourceRef="gate" targetRef="wait" />
    <bpmn:userTask id="ask">
      <bpmn:extensionElements>
        <spiffworkflow:properties>{props}
          <spiffworkflow:property name="due" value="{expr}"/></spiffworkflow:properties>
        <spiffworkflow:preScript>{touch}</spiffworkflow:preScript>
        <spiffworkflow:postScript>{touch}</spiffworkflow:postScript>
      </bpmn:extensionElements>
      <bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:sequenceFlow id="f5" sourceRef="ask" targetRef="rates" />
    <bpmn:businessRuleTask id="rates">
      <bpmn:extensionElements>
        <spiffworkflow:calledDecisionId>evil_rates</spiffworkflow:calledDecisionId>
      </bpmn:extensionElements>
      <bpmn:incoming>f5</bpmn:incoming><bpmn:outgoing>f6</bpmn:outgoing>
    </bpmn:businessRuleTask>
    <bpmn:sequenceFlow id="f6" sourceRef="rates" targetRef="end1" />
    <bpmn:endEvent id="end1"><bpmn:incoming>f6</bpmn:incoming></bpmn:endEvent>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:incoming>f4</bpmn:incoming>
      <bpmn:outgoing>f7</bpmn:outgoing><bpmn:timerEventDefinition>
        <bpmn:timeDuration>{expr} and 'P1D'</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:intermediateCatchEvent>
    <bpmn:sequenceFlow id="f7" sourceRef="wait" targetRef="end2" />
    <bpmn:endEvent id="end2"><bpmn:incoming>f7</bpmn:incoming></bpmn:endEvent>
  </bpmn:process>
</bpmn:definitions>
"""
    dmn = f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="dd" name="dd" namespace="n">
  <decision id="evil_rates" name="evil_rates">
    <decisionTable id="evil_table" hitPolicy="FIRST">
      <input id="i1"><inputExpression id="e1" typeRef="string"><text>{expr}</text>
        </inputExpression></input>
      <output id="o1" name="rate" typeRef="number" />
      <rule id="r1"><inputEntry id="r1i"><text>-</text></inputEntry>
        <outputEntry id="r1o"><text>{expr}</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>
"""
    return {"evil.bpmn": bpmn.encode(), "evil_rates.dmn": dmn.encode()}


@pytest.fixture
def no_script_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deploying may parse and compile; any evaluation through SpiffWorkflow fails the test."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a script or expression was evaluated while deploying")

    monkeypatch.setattr(PythonScriptEngine, "evaluate", refuse)
    monkeypatch.setattr(PythonScriptEngine, "execute", refuse)
    monkeypatch.setattr(DMNEngine, "evaluate", refuse)


@pytest.fixture
def evil(tmp_path: Path) -> Iterator[tuple[Path, dict[str, bytes]]]:
    marker = tmp_path / "ran"
    yield marker, _evil_files(marker)
    assert not marker.exists(), "deploying ran code from the process"


@pytest.mark.usefixtures("no_script_runs")
def test_deploying_through_the_engine_runs_nothing(
    evil: tuple[Path, dict[str, bytes]], sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    _marker, files = evil
    paths = []
    for name, content in files.items():
        (path := tmp_path / name).write_bytes(content)
        paths.append(path)
    with sessions.begin() as s:
        assert [d.process_id for d in deploy(s, paths)] == ["evil"]


@pytest.mark.usefixtures("no_script_runs")
def test_deploying_from_the_command_line_runs_nothing(
    evil: tuple[Path, dict[str, bytes]], duban: Callable[..., Result], tmp_path: Path
) -> None:
    _marker, files = evil
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    result = duban("deploy", *(str(tmp_path / name) for name in files))
    assert result.exit_code == 0 and "evil v1 deployed" in result.output, result.output


@pytest.mark.usefixtures("no_script_runs")
def test_the_admin_upload_runs_nothing_and_shows_the_code_as_text(
    evil: tuple[Path, dict[str, bytes]], admin: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    _marker, files = evil
    status, _page = _upload(admin, files)
    assert status == 302
    with sessions() as s:
        version_id = s.scalars(select(ProcessVersion.id)).one()
    source = admin.get(f"/admin/deployments/{version_id}").get_data(as_text=True)
    assert "__import__(&#39;os&#39;).system(" in source


def test_a_decision_entry_that_is_code_is_refused_unevaluated(
    evil: tuple[Path, dict[str, bytes]], duban: Callable[..., Result], tmp_path: Path
) -> None:
    marker, files = evil
    table = files["evil_rates.dmn"].replace(
        b"<text>-</text>", f"<text>open('{marker}', 'w') == 1</text>".encode()
    )
    (path := tmp_path / "evil_rates.dmn").write_bytes(table)
    (tmp_path / "evil.bpmn").write_bytes(files["evil.bpmn"])
    result = duban("deploy", str(tmp_path / "evil.bpmn"), str(path))
    assert result.exit_code == 1 and f"{path}:" in result.output
    assert "is not a form duban can check" in result.output


# ---------------------------------------------------------------- only administrators deploy


@pytest.mark.parametrize(
    ("unit", "position"),
    [("县卫生健康局", "office_director"), ("县农业农村局", "liaison"), ("州卫生健康委", "head")],
)
def test_only_an_administrator_may_deploy_a_script(
    evil: tuple[Path, dict[str, bytes]],
    app,  # type: ignore[no-untyped-def]
    make_person,  # type: ignore[no-untyped-def]
    seeded: sessionmaker[Session],
    unit: str,
    position: str,
) -> None:
    _marker, files = evil
    client = app.test_client()
    app.config["WTF_CSRF_ENABLED"] = False
    sign_in(client, make_person("someone", unit, position))
    before = _versions(seeded)
    assert _upload(client, files)[0] == 403
    assert _versions(seeded) == before


def test_the_api_offers_no_way_to_deploy(app, make_person) -> None:  # type: ignore[no-untyped-def]
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/")]
    assert rules and not [r.rule for r in rules if "deploy" in r.rule or "process" in r.rule]
    token = make_person("管理员", admin=True).token
    client = app.test_client()
    for path in ("/api/v1/deployments", "/api/v1/processes"):
        response = client.post(path, headers={"Authorization": f"Bearer {token}"}, data=b"x")
        assert response.status_code == 404 and response.mimetype == "application/json"
