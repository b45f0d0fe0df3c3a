"""The JSON API (/api/v1) through the Flask client, with bearer tokens: the liaison's round
trip, who may see and do what, errors as JSON, and evidence files."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from engine.clock import FixedClock
from engine.models import ApiToken, Attachment, HistoryEntry, HumanTask, Instance, TaskState
from engine.routing import hand_out
from tests.helpers import act, completed_count, open_steps
from tests.web.conftest import Someone

API = "/api/v1"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def fixed_now(monkeypatch: pytest.MonkeyPatch, clock: FixedClock) -> None:
    """The API reads the time from engine.clock.utcnow: pin it to the seed's clock."""
    monkeypatch.setattr("web.api.views.utcnow", clock)
    monkeypatch.setattr("web.api.common.utcnow", clock)


@pytest.fixture
def item(seeded, clock) -> int:
    """Weixi task 7: lead 县卫生健康局, co-lead 县农业农村局 (each acknowledges first)."""
    with seeded.begin() as s:
        (instance,) = hand_out(s, "weixi-2023-15", [7], clock())
    return instance.id


def _step(seeded, item: int, unit_name: str, element: str | None = None) -> HumanTask:
    with seeded() as s:
        for step in open_steps(s, item):
            if step.unit.name == unit_name and element in (None, step.element_id):
                return step
    raise AssertionError(f"no open step for {unit_name}")


def call(
    client: FlaskClient, method: str, path: str, who: Someone | None = None, **kwargs: Any
) -> TestResponse:
    headers = dict(kwargs.pop("headers", {}))
    if who is not None:
        headers["Authorization"] = f"Bearer {who.token}"
    return client.open(API + path, method=method, headers=headers, **kwargs)


def _ids(response: TestResponse) -> list[int]:
    return [s["id"] for s in response.get_json()["steps"]]


def test_a_liaison_sees_completes_and_the_next_unit_takes_over(client, make_person, seeded, item):
    farm = make_person("农业联络员", "县农业农村局")
    health = make_person("卫健联络员", "县卫生健康局")
    step = _step(seeded, item, "县农业农村局")
    inbox = call(client, "GET", "/inbox", farm)
    assert inbox.status_code == 200 and inbox.mimetype == "application/json"
    body = inbox.get_json()
    assert (body["total"], body["page"], body["pages"]) == (1, 1, 1)
    (entry,) = body["steps"]
    assert entry["id"] == step.id and entry["form"] == "acknowledge"
    assert entry["item"]["business_key"] == "weixi-2023-15#7" and entry["item"]["number"] == 7
    assert entry["item"]["excerpt"].startswith("加强人类辅助生殖技术")
    assert entry["unit"]["name"] == "县农业农村局" and entry["position"]["kind"] == "liaison"
    # Handed out 2026-11-25 (Beijing): three days, to the end of that local day, stored in UTC.
    assert (entry["due_at"], entry["due_date"]) == ("2026-11-28T15:59:59Z", "2026-11-28")
    assert entry["urgency"] == "green" and entry["state"] == "ready"

    done = call(client, "POST", f"/tasks/{step.id}/complete", farm, json={"data": {"note": "收到"}})
    assert done.status_code == 200, done.get_json()
    result = done.get_json()
    assert result["step"]["state"] == "completed" and result["can_act"] is False
    assert result["form_data"] == {"note": "收到"}
    assert _ids(call(client, "GET", "/inbox", farm)) == []
    assert _ids(call(client, "GET", "/done", farm)) == [step.id]

    ack = _step(seeded, item, "县卫生健康局")
    assert _ids(call(client, "GET", "/inbox", health)) == [ack.id]
    assert call(client, "POST", f"/tasks/{ack.id}/complete", health, json={"data": {}}).status_code
    plan_step = _step(seeded, item, "县卫生健康局", "set_plan")
    assert _ids(call(client, "GET", "/inbox", health)) == [plan_step.id]
    detail = call(client, "GET", f"/tasks/{plan_step.id}", health).get_json()
    assert detail["can_act"] is True and detail["form"]["name"] == "plan"
    assert [f["name"] for f in detail["form"]["fields"]] == [
        "plan",
        "support_due",
        "implement_due",
        "final_due",
    ]
    history = call(client, "GET", f"/items/{item}", farm).get_json()["history"]
    completed = [h for h in history if h["action"] == "completed"]
    assert completed[0]["actor"]["person"]["name"] == "农业联络员"
    assert completed[0]["actor"]["position"]["unit"]["name"] == "县农业农村局"


def test_me_plans_and_the_openapi_document(client, make_person):
    farm = make_person("农业联络员", "县农业农村局")
    me = call(client, "GET", "/me", farm).get_json()
    assert me["person"]["name"] == "农业联络员" and me["is_admin"] is False
    (seat,) = me["positions"]
    assert seat["kind"] == "liaison" and seat["unit"]["name"] == "县农业农村局"
    assert seat["unit"]["kind"] == "department" and me["office_jurisdictions"] == []
    office = call(client, "GET", "/me", make_person("office", "县卫生健康局", "office_director"))
    assert office.get_json()["office_jurisdictions"] == [
        {"code": "weixi", "name": "维西傈僳族自治县"}
    ]
    plans = {p["key"]: p for p in call(client, "GET", "/plans", farm).get_json()["plans"]}
    assert plans["weixi-2023-15"]["task_count"] == 31
    assert plans["weixi-2023-15"]["document_number"] == "维发〔2023〕15号"
    assert plans["weixi-2023-15"]["jurisdiction"]["code"] == "weixi"
    doc = client.get(f"{API}/openapi.json")  # public: it describes, it shows no data
    assert doc.status_code == 200 and doc.get_json()["openapi"] == "3.0.3"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer dbn_not-a-token", "Basic dXNlcjpwYXNz", "Bearer", "dbn_no-scheme"],
)
def test_no_or_a_bad_token_is_401_in_json(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in [("GET", "/me"), ("GET", "/inbox"), ("POST", "/tasks/1/complete")]:
        response = call(client, method, path, headers=headers, json={"data": {}})
        assert response.status_code == 401 and response.mimetype == "application/json"
        assert response.get_json()["error"]
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="duban"')


def test_a_revoked_token_or_a_disabled_account_is_401(client, make_person, seeded, clock):
    farm = make_person("农业联络员", "县农业农村局")
    assert call(client, "GET", "/me", farm).status_code == 200
    with seeded.begin() as s:
        token = s.scalar(select(ApiToken))
        assert token.last_used_at == clock()  # use is recorded
        token.revoked_at = clock()
    assert call(client, "GET", "/me", farm).status_code == 401
    other = make_person("卫健联络员", "县卫生健康局")
    with seeded.begin() as s:
        s.scalar(select(ApiToken).where(ApiToken.revoked_at.is_(None))).account.active = False
    assert call(client, "GET", "/me", other).status_code == 401


def test_another_units_step_does_not_exist_for_you(client, make_person, seeded, item):
    finance = make_person("财政联络员", "县财政局")
    step = _step(seeded, item, "县农业农村局")
    with seeded() as s:
        last = s.scalar(select(func.max(HumanTask.id)))
    # Guessing ids: a real step of another unit answers exactly like one that does not exist.
    for task_id in (step.id, last + 1, 2**31 - 1, 10**12):
        for method, path, payload in [
            ("GET", f"/tasks/{task_id}", None),
            ("POST", f"/tasks/{task_id}/complete", {"data": {"note": "x"}}),
            ("POST", f"/tasks/{task_id}/comments", {"body": "x"}),
        ]:
            response = call(client, method, path, finance, json=payload)
            assert response.status_code == 404, (method, path)
            assert response.get_json() == {"error": f"no step {task_id}"}
    assert call(client, "GET", f"/items/{item}", finance).status_code == 404
    assert call(client, "GET", f"/items/{last + 100}", finance).status_code == 404
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.READY


def test_a_unit_head_sees_the_units_step_but_may_not_act(client, make_person, seeded, item):
    head = make_person("head", "县农业农村局", "head")
    step = _step(seeded, item, "县农业农村局")
    assert _ids(call(client, "GET", "/inbox", head)) == []
    assert _ids(call(client, "GET", "/inbox?scope=unit", head)) == [step.id]
    detail = call(client, "GET", f"/tasks/{step.id}", head)
    assert detail.status_code == 200 and detail.get_json()["can_act"] is False
    refused = call(client, "POST", f"/tasks/{step.id}/complete", head, json={"data": {}})
    assert refused.status_code == 403
    assert "may complete it" in refused.get_json()["error"]
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.READY


def test_completing_twice_is_a_409_and_changes_nothing(client, make_person, seeded, item):
    farm = make_person("农业联络员", "县农业农村局")
    step = _step(seeded, item, "县农业农村局")
    path = f"/tasks/{step.id}/complete"
    assert call(client, "POST", path, farm, json={"data": {}}).status_code == 200
    with seeded() as s:
        revision = s.get(Instance, step.instance_id).revision
    again = call(client, "POST", path, farm, json={"data": {"note": "again"}})
    assert again.status_code == 409 and "already completed" in again.get_json()["error"]
    with seeded() as s:
        assert s.get(Instance, step.instance_id).revision == revision
        assert completed_count(s) == 1


def _at_set_plan(seeded, clock, item: int) -> HumanTask:
    for unit in ("县农业农村局", "县卫生健康局"):
        act(seeded, _step(seeded, item, unit, "acknowledge"), clock)
    return _step(seeded, item, "县卫生健康局", "set_plan")


def test_a_refused_form_is_400_with_the_field_errors(client, make_person, seeded, clock, item):
    health = make_person("卫健联络员", "县卫生健康局")
    step = _at_set_plan(seeded, clock, item)
    with seeded() as s:
        before = s.get(Instance, step.instance_id).revision
    data = {"plan": "x", "support_due": "2026-02-30", "implement_due": "2020-01-01"}
    response = call(client, "POST", f"/tasks/{step.id}/complete", health, json={"data": data})
    assert response.status_code == 400
    assert response.get_json()["errors"] == {
        "support_due": "must be a date as YYYY-MM-DD",
        "implement_due": "must not be before today (2026-11-25)",
        "final_due": "is required",
    }
    typed = call(client, "POST", f"/tasks/{step.id}/complete", health, json={"data": {"plan": 5}})
    assert typed.status_code == 400 and typed.get_json()["errors"]["plan"] == "must be text"
    with seeded() as s:
        assert s.get(Instance, step.instance_id).revision == before
        assert s.get(HumanTask, step.id).state == TaskState.READY


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "not valid JSON"),
        (b'{"data": NaN}', "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b'{"data": []}', "application/json", 400, "'data' must be a JSON object"),
        (b'{"data": {}, "extra": 1}', "application/json", 400, "unknown member(s): extra"),
        (b"{}", "application/json", 400, "missing member(s): data"),
        (b'{"data": {"note": "a\\u0000b"}}', "application/json", 400, "NUL character"),
        (b'{"data": {"note": "\\ud800"}}', "application/json", 400, "not valid Unicode"),
        (b"note=x", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400, "JSON"),
        (b'{"data": ' + b"[" * 990 + b"]" * 990 + b"}", "application/json", 400, ""),
    ],
)
def test_a_malformed_body_is_a_json_error_never_a_500(
    client, make_person, seeded, item, body, content_type, status, message
):
    farm = make_person("农业联络员", "县农业农村局")
    step = _step(seeded, item, "县农业农村局")
    response = call(
        client, "POST", f"/tasks/{step.id}/complete", farm, data=body, content_type=content_type
    )
    assert response.status_code == status and message in response.get_json()["error"]
    comment = call(
        client, "POST", f"/tasks/{step.id}/comments", farm, data=body, content_type=content_type
    )
    assert comment.status_code in (400, 415) and comment.mimetype == "application/json"


def test_comments_are_json_and_checked(client, make_person, seeded, item):
    farm = make_person("农业联络员", "县农业农村局")
    step = _step(seeded, item, "县农业农村局")
    added = call(client, "POST", f"/tasks/{step.id}/comments", farm, json={"body": " 已阅 "})
    assert added.status_code == 201
    assert added.get_json()["body"] == "已阅" and added.get_json()["step_id"] == step.id
    blank = call(client, "POST", f"/tasks/{step.id}/comments", farm, json={"body": "  "})
    assert blank.status_code == 400 and blank.get_json()["errors"] == {"body": "is required"}
    wrong = call(client, "POST", f"/tasks/{step.id}/comments", farm, json={"body": ["x"]})
    assert wrong.status_code == 400 and "'body' must be a string" in wrong.get_json()["error"]
    (shown,) = call(client, "GET", f"/items/{item}", farm).get_json()["comments"]
    assert shown["person"]["name"] == "农业联络员" and shown["body"] == "已阅"


def _upload(client, who, task_id, name: str, content: bytes) -> TestResponse:
    return call(
        client,
        "POST",
        f"/tasks/{task_id}/attachments",
        who,
        data={"file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )


def test_evidence_is_stored_listed_and_downloadable_by_the_unit(
    client, make_person, seeded, item, app
):
    farm = make_person("农业联络员", "县农业农村局")
    finance = make_person("财政联络员", "县财政局")
    step = _step(seeded, item, "县农业农村局")
    stored = _upload(client, farm, step.id, "方案.pdf", PDF)
    assert stored.status_code == 201, stored.get_json()
    meta = stored.get_json()
    assert (meta["filename"], meta["content_type"], meta["size"]) == (
        "方案.pdf",
        "application/pdf",
        len(PDF),
    )
    (listed,) = call(client, "GET", f"/items/{item}", farm).get_json()["attachments"]
    assert (
        listed["id"] == meta["id"] and listed["download_url"] == f"{API}/attachments/{meta['id']}"
    )
    with call(client, "GET", f"/attachments/{meta['id']}", farm) as download:
        assert download.status_code == 200 and download.data == PDF
        assert download.mimetype == "application/pdf"
        assert download.headers["X-Content-Type-Options"] == "nosniff"
        assert "attachment" in download.headers["Content-Disposition"]
    assert call(client, "GET", f"/attachments/{meta['id']}", finance).status_code == 404
    assert call(client, "GET", f"/attachments/{meta['id'] + 1}", farm).status_code == 404


def test_refused_files_are_400_and_nothing_is_stored(client, make_person, seeded, item, app):
    farm = make_person("农业联络员", "县农业农村局")
    step = _step(seeded, item, "县农业农村局")
    refused = _upload(client, farm, step.id, "setup.exe", b"MZ\x90\x00 a program")
    assert refused.status_code == 400
    body = refused.get_json()
    assert "type '.exe' is not allowed" in body["errors"]["file"]
    assert ".pdf" in body["errors"]["file"]  # says what is allowed
    fake = _upload(client, farm, step.id, "scan.pdf", b"MZ not a pdf")
    assert fake.status_code == 400 and fake.get_json()["errors"] == {
        "file": "content is not a .pdf file"
    }
    missing = call(
        client,
        "POST",
        f"/tasks/{step.id}/attachments",
        farm,
        data={"x": "1"},
        content_type="multipart/form-data",
    )
    assert missing.status_code == 400 and "'file'" in missing.get_json()["error"]
    as_json = call(client, "POST", f"/tasks/{step.id}/attachments", farm, json={"file": "x"})
    assert as_json.status_code == 415
    store = app.extensions["duban.attachments"].root
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Attachment)) == 0
        assert s.scalar(select(func.count()).where(HistoryEntry.action == "attached")) == 0


def test_a_body_over_the_limit_is_413_in_json(client, make_person, seeded, item, app):
    farm = make_person("农业联络员", "县农业农村局")
    step = _step(seeded, item, "县农业农村局")
    app.config["MAX_CONTENT_LENGTH"] = 4096
    response = _upload(client, farm, step.id, "big.pdf", PDF + b"0" * 8192)
    assert response.status_code == 413 and "limit" in response.get_json()["error"]
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Attachment)) == 0


def test_evidence_only_from_who_may_complete_an_open_step(client, make_person, seeded, item):
    farm = make_person("农业联络员", "县农业农村局")
    head = make_person("head", "县农业农村局", "head")
    step = _step(seeded, item, "县农业农村局")
    assert _upload(client, head, step.id, "a.pdf", PDF).status_code == 403
    call(client, "POST", f"/tasks/{step.id}/complete", farm, json={"data": {}})
    assert _upload(client, farm, step.id, "a.pdf", PDF).status_code == 409


def test_unknown_addresses_and_methods_are_json_html_pages_are_not(client, make_person):
    farm = make_person("农业联络员", "县农业农村局")
    missing = call(client, "GET", "/nothing-here", farm)
    assert missing.status_code == 404 and missing.mimetype == "application/json"
    wrong = call(client, "DELETE", "/me", farm)
    assert wrong.status_code == 405 and wrong.mimetype == "application/json"
    assert "GET" in wrong.headers["Allow"] and wrong.get_json()["error"]
    posted = call(client, "POST", "/nothing-here", farm, json={})
    assert posted.status_code == 404 and posted.mimetype == "application/json"
    assert call(client, "GET", "/tasks/abc", farm).status_code == 404
    assert call(client, "GET", "/inbox?urgency=purple", farm).status_code == 400
    assert call(client, "GET", "/inbox?within=%C2%B2", farm).status_code == 400
    assert call(client, "GET", "/inbox?page=99999999", farm).status_code == 400
    assert call(client, "GET", "/inbox?plan=a%00b", farm).status_code == 400
    assert client.get("/no-such-page").mimetype == "text/html"


# Steps of item 7 (weixi task 7): the step is 县农业农村局's acknowledgement, its liaison's.
ROLES = {
    "liaison of the step's unit": ("县农业农村局", "liaison", False),
    "liaison of the co-lead unit": ("县卫生健康局", "liaison", False),
    "liaison of another unit": ("县财政局", "liaison", False),
    "head of the step's unit": ("县农业农村局", "head", False),
    "office director": ("县卫生健康局", "office_director", False),
    "admin without positions": (None, "liaison", True),
}
ENDPOINTS = ("GET task", "POST comment", "GET item", "POST complete")
EXPECTED = {
    "liaison of the step's unit": (200, 201, 200, 200),
    "liaison of the co-lead unit": (200, 201, 200, 403),
    "liaison of another unit": (404, 404, 404, 404),
    "head of the step's unit": (200, 201, 200, 403),
    "office director": (200, 201, 200, 403),
    "admin without positions": (404, 404, 404, 404),
}


def _statuses(client, who: Someone, task_id: int, item: int) -> tuple[int, ...]:
    return (
        call(client, "GET", f"/tasks/{task_id}", who).status_code,
        call(client, "POST", f"/tasks/{task_id}/comments", who, json={"body": "阅"}).status_code,
        call(client, "GET", f"/items/{item}", who).status_code,
        call(
            client, "POST", f"/tasks/{task_id}/complete", who, json={"data": {"note": "x"}}
        ).status_code,
    )


def test_authorization_matrix(client, make_person, seeded, item):
    step = _step(seeded, item, "县农业农村局")
    people = {
        role: make_person(f"p{i}", unit, position, admin)
        for i, (role, (unit, position, admin)) in enumerate(ROLES.items())
    }
    # The step's own liaison goes last: it completes the step, which the others must not.
    order = [r for r in ROLES if r != "liaison of the step's unit"] + ["liaison of the step's unit"]
    actual = {role: _statuses(client, people[role], step.id, item) for role in order}
    assert actual == EXPECTED, "\n".join(
        f"{role}: {dict(zip(ENDPOINTS, actual[role], strict=True))}" for role in order
    )
