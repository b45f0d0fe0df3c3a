"""Hostile input from signed-in people: text that looks like code, path tricks in file names,
session cookies that are not theirs, numbers that are not numbers. Every one is stored as
text or refused with a 4xx, and a refusal stores nothing.

Already covered elsewhere: CSRF, a script tag in a comment, an oversized upload and control
characters (tests/web/test_screens.py); every role against every step address
(tests/web/test_authorization.py); a revoked token and a disabled account's token are 401 and
malformed JSON bodies are 400 (tests/web/test_api.py). Form fields of every type and guessed
ids, property-based, are in test_hostile_forms.py."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.http import parse_options_header

from engine.clock import FixedClock
from engine.models import (
    Account,
    Attachment,
    Comment,
    HistoryEntry,
    HumanTask,
    Instance,
    InstanceStatus,
    TaskState,
)
from engine.routing import hand_out
from tests.helpers import act, open_steps
from tests.web.conftest import sign_in

API = "/api/v1"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
LEAD, CO_LEAD = "县卫生健康局", "县农业农村局"  # Weixi task 7


def _payloads(marker: Path) -> list[str]:
    """Text that a template engine, a shell, Python or an expression would do something with."""
    return [
        f"__import__('os').system('touch {marker}')",
        "{{7*7}}",
        "${7*7}",
        '"close" or True',
        "decision == 'close'",
        "<script>alert(7*7)</script>",
        "#{7*7} %(x)s {0} `id`",
    ]


@pytest.fixture
def item(seeded: sessionmaker[Session], clock: FixedClock) -> int:
    with seeded.begin() as s:
        (instance,) = hand_out(s, "weixi-2023-15", [7], clock())
    return instance.id


def _step(seeded: sessionmaker[Session], item: int, unit: str, element: str) -> HumanTask:
    with seeded() as s:
        for step in open_steps(s, item):
            if step.unit.name == unit and step.element_id == element:
                return step
    raise AssertionError(f"no open step {element} for {unit}")


def _call(client: FlaskClient, token: str, method: str, path: str, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return client.open(API + path, method=method, headers=headers, **kw)


def _counts(seeded: sessionmaker[Session], item: int) -> tuple[int, ...]:
    """What a refused request must leave as it was: history, revisions, steps, comments."""
    tree = select(Instance.id).where(Instance.root_id == item)
    with seeded() as s:
        return (
            s.scalar(select(func.count(HistoryEntry.id))) or 0,
            s.scalar(select(func.sum(Instance.revision)).where(Instance.id.in_(tree))) or 0,
            s.scalar(select(func.count(HumanTask.id)).where(HumanTask.state == TaskState.READY))
            or 0,
            s.scalar(select(func.count(Comment.id))) or 0,
        )


# ---------------------------------------------------------------- nothing typed runs


def test_text_that_looks_like_code_is_kept_as_text_and_routes_nothing(
    app: Flask, make_person: Any, seeded: sessionmaker[Session], item: int, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    payloads = _payloads(marker)
    app.config["WTF_CSRF_ENABLED"] = False
    farm, health = make_person("农业联络员", CO_LEAD), make_person("卫健联络员", LEAD)
    farm_web = sign_in(app.test_client(), farm)
    api = app.test_client()

    # Comments, through the page and the API.
    ack = _step(seeded, item, CO_LEAD, "acknowledge")
    for text in payloads:
        assert farm_web.post(f"/tasks/{ack.id}/comments", data={"body": text}).status_code == 302
        assert _call(api, health.token, "POST", f"/tasks/{ack.id}/comments", json={"body": text})
    # Every text field of every step on the way, alternately through the page and the API.
    assert farm_web.post(f"/tasks/{ack.id}", data={"note": payloads[0]}).status_code == 302
    lead_ack = _step(seeded, item, LEAD, "acknowledge")
    done = _call(
        api,
        health.token,
        "POST",
        f"/tasks/{lead_ack.id}/complete",
        json={"data": {"note": payloads[1]}},
    )
    assert done.status_code == 200, done.get_json()
    plan = _step(seeded, item, LEAD, "set_plan")
    day = "2027-01-15"
    data = {"plan": payloads[2], "support_due": day, "implement_due": day, "final_due": day}
    done = _call(api, health.token, "POST", f"/tasks/{plan.id}/complete", json={"data": data})
    assert done.status_code == 200, done.get_json()
    # The text names the other branch of the gateway; the choice field alone decides.
    contribute = _step(seeded, item, CO_LEAD, "contribute")
    form = {"action": "submit", "content": "action == 'request_extension'", "evidence": payloads[3]}
    assert farm_web.post(f"/tasks/{contribute.id}", data=form).status_code == 302
    consolidate = _step(seeded, item, LEAD, "consolidate")
    with seeded() as s:
        assert [t.element_id for t in open_steps(s, item)] == ["consolidate"]
    done = _call(
        api,
        health.token,
        "POST",
        f"/tasks/{consolidate.id}/complete",
        json={"data": {"summary": payloads[4], "evidence": payloads[5]}},
    )
    assert done.status_code == 200, done.get_json()

    review = _step(seeded, item, LEAD, "review")
    with seeded() as s:
        seat = s.get(HumanTask, review.id).position
        office_seat = (seat.unit.name, seat.kind.value)
    office = make_person("办公室", *office_seat)
    office_web = sign_in(app.test_client(), office)
    before = _counts(seeded, item)
    for decision in ('"close" or True', "decision == 'close'", "close or True", "close "):
        refused = office_web.post(f"/tasks/{review.id}", data={"decision": decision})
        assert refused.status_code == 400
        assert 'data-error="decision"' in refused.get_data(as_text=True)
        answer = _call(
            api,
            office.token,
            "POST",
            f"/tasks/{review.id}/complete",
            json={"data": {"decision": decision}},
        )
        assert answer.status_code == 400 and "decision" in answer.get_json()["errors"]
    extra = {"decision": "close", "__import__('os').system('id')": "1"}
    answer = _call(api, office.token, "POST", f"/tasks/{review.id}/complete", json={"data": extra})
    assert (
        answer.status_code == 400 and "__import__('os').system('id')" in answer.get_json()["errors"]
    )
    assert _counts(seeded, item) == before

    # Sent back with a reason that reads like the other decision: it is sent back.
    reason = "decision == 'close' {{7*7}} ${7*7}"
    back = {"decision": "send_back", "reason": reason}
    assert office_web.post(f"/tasks/{review.id}", data=back).status_code == 302
    again = _step(seeded, item, LEAD, "consolidate")
    with seeded() as s:
        assert s.get(Instance, item).status == InstanceStatus.RUNNING
    health_web = sign_in(app.test_client(), health)
    notices = health_web.get("/notifications").get_data(as_text=True)
    assert str(escape(reason)) in notices
    act(seeded, again, FixedClock(again.created_at))
    final = _step(seeded, item, LEAD, "review")
    assert office_web.post(f"/tasks/{final.id}", data={"decision": "close"}).status_code == 302

    with seeded() as s:
        assert s.get(Instance, item).status == InstanceStatus.COMPLETED
        stored = {t.id: t.form_data for t in s.scalars(select(HumanTask))}
        bodies = list(s.scalars(select(Comment.body).order_by(Comment.id)))
    assert stored[ack.id] == {"note": payloads[0]}
    assert stored[lead_ack.id] == {"note": payloads[1]}
    assert stored[plan.id]["plan"] == payloads[2]
    assert stored[contribute.id]["evidence"] == payloads[3]
    assert stored[contribute.id]["action"] == "submit"
    assert stored[consolidate.id]["summary"] == payloads[4]
    assert stored[review.id] == back
    assert bodies == [text for text in payloads for _ in (1, 2)]
    page = office_web.get(f"/tasks/{final.id}").get_data(as_text=True)
    for text in payloads:
        assert str(escape(text)) in page, text
    assert "<script>alert(7*7)</script>" not in page
    detail = _call(api, health.token, "GET", f"/items/{item}").get_json()
    assert [c["body"] for c in detail["comments"]] == bodies
    assert not marker.exists()


# ---------------------------------------------------------------- path tricks in file names

# (name as uploaded, name as stored and offered for download; None: refused)
NAMES: list[tuple[str, str | None]] = [
    ("../../etc/passwd.pdf", "passwd.pdf"),
    ("/etc/cron.d/evil.pdf", "evil.pdf"),
    # In a quoted multipart header a backslash escapes the next character: they arrive dropped.
    ("..\\..\\windows\\win.ini.pdf", "windowswin.ini.pdf"),
    ("C:\\boot.pdf", "Cboot.pdf"),
    ("a\x00b.pdf", "ab.pdf"),
    ("x" * 1000 + ".pdf", "x" * 196 + ".pdf"),
    ("．．／．．／etc／shadow.pdf", "shadow.pdf"),  # fullwidth: '/' once normalised
    ("\u2024\u2024/\u2024\u2024/leader.pdf", "leader.pdf"),  # one-dot leaders read as '..'
    ("invoice\u202efdp.exe.pdf", "invoicefdp.exe.pdf"),  # right-to-left override dropped
    # Unescaped by the client, the quote ends the parameter: the injected name is the one
    # that arrives, and it is cleaned like any other.
    ('报告"; filename="x.exe\t.pdf', "x.exe.pdf"),
    ("...", None),
    ("..", None),
    ("../../etc/passwd", None),
    ("evil.pdf.exe", None),
]


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _assert_stored_by_hash_only(tmp_path: Path) -> None:
    """Every file written is the attachment store's own: <root>/<2 hex>/<sha256 of content>."""
    store = tmp_path / "attachments"
    for path in _files_under(tmp_path):
        assert path.parent.parent == store, path
        assert path.name == hashlib.sha256(path.read_bytes()).hexdigest(), path
        assert path.parent.name == path.name[:2], path


def _assert_safe_download(response: Any, expected: str) -> None:
    assert response.status_code == 200
    header = response.headers["Content-Disposition"]
    response.close()
    assert "\r" not in header and "\n" not in header
    kind, params = parse_options_header(header)
    assert kind == "attachment" and params["filename"] == expected
    assert not any(sep in value for value in params.values() for sep in ("/", "\\", "\0"))


def _contribution(seeded: sessionmaker[Session], clock: FixedClock, item: int) -> HumanTask:
    for unit in (LEAD, CO_LEAD):
        act(seeded, _step(seeded, item, unit, "acknowledge"), clock)
    act(seeded, _step(seeded, item, LEAD, "set_plan"), clock)
    return _step(seeded, item, CO_LEAD, "contribute")


def test_attachment_names_through_the_api(
    app: Flask,
    make_person: Any,
    seeded: sessionmaker[Session],
    clock: FixedClock,
    item: int,
    tmp_path: Path,
) -> None:
    step = _contribution(seeded, clock, item)
    farm = make_person("农业联络员", CO_LEAD)
    client = app.test_client()
    for n, (name, expected) in enumerate(NAMES):
        content = PDF + f"%{n}\n".encode()  # a distinct file each time
        data = {"file": (io.BytesIO(content), name)}
        before = _counts(seeded, item)
        response = _call(client, farm.token, "POST", f"/tasks/{step.id}/attachments", data=data)
        if expected is None:
            assert response.status_code == 400, name
            assert "file" in response.get_json()["errors"]
            assert _counts(seeded, item) == before
            continue
        assert response.status_code == 201, (name, response.get_json())
        row = response.get_json()
        assert row["filename"] == expected and row["sha256"] == hashlib.sha256(content).hexdigest()
        _assert_safe_download(
            _call(client, farm.token, "GET", f"/attachments/{row['id']}"), expected
        )
    # A line break in the name breaks the part's headers: no file arrives, none is stored.
    data = {"file": (io.BytesIO(PDF), "a.pdf\r\nContent-Type: text/html")}
    response = _call(client, farm.token, "POST", f"/tasks/{step.id}/attachments", data=data)
    assert response.status_code == 400 and "'file'" in response.get_json()["error"]
    _assert_stored_by_hash_only(tmp_path)
    with seeded() as s:
        assert s.scalar(select(func.count(Attachment.id))) == sum(1 for _, e in NAMES if e)


def test_attachment_names_through_the_step_form(
    app: Flask,
    make_person: Any,
    seeded: sessionmaker[Session],
    clock: FixedClock,
    item: int,
    tmp_path: Path,
) -> None:
    step = _contribution(seeded, clock, item)
    app.config["WTF_CSRF_ENABLED"] = False
    browser = sign_in(app.test_client(), make_person("农业联络员", CO_LEAD))
    accepted = [(name, e) for name, e in NAMES if e is not None]
    refused = [name for name, e in NAMES if e is None]
    before = _counts(seeded, item)
    for name in refused:  # one bad file among good ones: the whole submission is refused
        files = [(io.BytesIO(PDF), accepted[0][0]), (io.BytesIO(PDF), name)]
        response = browser.post(
            f"/tasks/{step.id}",
            data={"content": "材料", "files": files},
            content_type="multipart/form-data",
        )
        assert response.status_code == 400 and 'data-error="file"' in response.get_data(True)
    assert _counts(seeded, item) == before
    files = [(io.BytesIO(PDF + f"%{n}\n".encode()), name) for n, (name, _) in enumerate(accepted)]
    response = browser.post(
        f"/tasks/{step.id}",
        data={"content": "材料", "files": files},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    with seeded() as s:
        rows = list(s.scalars(select(Attachment).order_by(Attachment.id)))
    assert [r.filename for r in rows] == [expected for _, expected in accepted]
    for row in rows:
        _assert_safe_download(browser.get(f"/attachments/{row.id}"), row.filename)
    _assert_stored_by_hash_only(tmp_path)


# ---------------------------------------------------------------- session cookies


def _cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def _with_cookie(app: Flask, value: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie("session", value)
    return client


def _is_anonymous(client: FlaskClient, step_id: int) -> None:
    page = client.get("/inbox")
    assert page.status_code == 302 and page.headers["Location"].startswith("/login")
    posted = client.post(f"/tasks/{step_id}", data={"note": "x"})
    assert posted.status_code == 302 and posted.headers["Location"].startswith("/login")


def _account_id(seeded: sessionmaker[Session], login: str) -> int:
    with seeded() as s:
        return s.scalars(select(Account.id).where(Account.login == login)).one()


def test_a_cookie_signed_elsewhere_or_altered_is_nobody(
    app: Flask, make_person: Any, seeded: sessionmaker[Session], item: int
) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    victim = make_person("农业联络员", CO_LEAD)
    attacker = make_person("财政联络员", "县财政局")
    step = _step(seeded, item, CO_LEAD, "acknowledge")
    victim_id = _account_id(seeded, victim.login)
    before = _counts(seeded, item)
    # A session naming the victim, signed with a key that is not the server's.
    elsewhere = Flask("elsewhere")
    elsewhere.secret_key = "guessed-secret"
    signer = SecureCookieSessionInterface().get_signing_serializer(elsewhere)
    assert signer is not None
    for user_id in (f"{victim_id}.0", str(victim_id)):
        forged = signer.dumps({"_user_id": user_id, "_fresh": True})
        _is_anonymous(_with_cookie(app, forged), step.id)
    # The attacker's own, genuine cookie with the account id changed: the signature breaks.
    own = _cookie(sign_in(app.test_client(), attacker))
    real = SecureCookieSessionInterface().get_signing_serializer(app)
    assert real is not None
    payload = real.loads(own)
    assert payload["_user_id"].startswith(f"{_account_id(seeded, attacker.login)}.")
    body, signature = own.rsplit(".", 1)
    altered = signer.dumps({**payload, "_user_id": f"{victim_id}.0"}).rsplit(".", 1)[0]
    for value in (f"{altered}.{signature}", f"{body[:-2]}AA.{signature}", own[:-3] + "abc"):
        _is_anonymous(_with_cookie(app, value), step.id)
    # A session cookie is no API credential.
    assert _with_cookie(app, own).get(f"{API}/me").status_code == 401
    assert _counts(seeded, item) == before


def test_a_valid_cookie_gives_its_own_rights_only(
    app: Flask, make_person: Any, seeded: sessionmaker[Session], item: int
) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    outsider = sign_in(app.test_client(), make_person("财政联络员", "县财政局"))
    step = _step(seeded, item, CO_LEAD, "acknowledge")
    before = _counts(seeded, item)
    assert outsider.get(f"/tasks/{step.id}").status_code == 404
    assert outsider.post(f"/tasks/{step.id}", data={"note": "x"}).status_code == 404
    assert outsider.post(f"/tasks/{step.id}/comments", data={"body": "x"}).status_code == 404
    assert _counts(seeded, item) == before


def test_a_cookie_kept_after_signing_out_opens_nothing(
    app: Flask, make_person: Any, seeded: sessionmaker[Session], item: int
) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    farm = make_person("农业联络员", CO_LEAD)
    step = _step(seeded, item, CO_LEAD, "acknowledge")
    browser = sign_in(app.test_client(), farm)
    other_device = sign_in(app.test_client(), farm)
    kept = _cookie(browser)
    assert _with_cookie(app, kept).get("/inbox").status_code == 200  # a copy works until…
    before = _counts(seeded, item)
    assert browser.post("/logout").status_code == 302
    _is_anonymous(_with_cookie(app, kept), step.id)
    _is_anonymous(other_device, step.id)  # signing out ends every session of the account
    assert _counts(seeded, item) == before
    again = sign_in(app.test_client(), farm)  # signing in again works as before
    assert again.get(f"/tasks/{step.id}").status_code == 200


def test_a_new_password_or_a_disabled_account_ends_its_sessions(
    app: Flask, make_person: Any, seeded: sessionmaker[Session], item: int
) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    farm = make_person("农业联络员", CO_LEAD)
    step = _step(seeded, item, CO_LEAD, "acknowledge")
    admin = sign_in(app.test_client(), make_person("管理员", admin=True))
    account_id = _account_id(seeded, farm.login)
    kept = _cookie(sign_in(app.test_client(), farm))
    reset = admin.post(f"/admin/accounts/{account_id}/password", data={"password": "x" * 12})
    assert reset.status_code == 302
    _is_anonymous(_with_cookie(app, kept), step.id)
    assert admin.get("/admin/").status_code == 200  # resetting someone else's: still signed in
    admin_id = _account_id(seeded, "管理员")
    own = admin.post(f"/admin/accounts/{admin_id}/password", data={"password": "y" * 12})
    assert own.status_code == 302 and admin.get("/admin/").status_code == 200  # their own too

    fresh = app.test_client()
    signed = fresh.post("/login", data={"login": farm.login, "password": "x" * 12})
    assert signed.status_code == 302  # the new password works
    kept_client = _with_cookie(app, _cookie(fresh))
    assert kept_client.get("/inbox").status_code == 200
    assert (
        admin.post(f"/admin/accounts/{account_id}/active", data={"active": "0"}).status_code == 302
    )
    _is_anonymous(kept_client, step.id)
    refused = _call(
        app.test_client(),
        farm.token,
        "POST",
        f"/tasks/{step.id}/complete",
        json={"data": {"note": "x"}},
    )
    assert refused.status_code == 401
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.READY


# ---------------------------------------------------------------- numbers that are not numbers

NOT_NUMBERS = ("²", "٣", "99999999999999999999", "-1", "1e3", " 7", "0x1f")


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_numbers_in_queries_and_forms_are_read_strictly(
    app: Flask, make_person: Any, seeded: sessionmaker[Session], value: str
) -> None:
    app.config["WTF_CSRF_ENABLED"] = False
    office = sign_in(app.test_client(), make_person("办公室主任", LEAD, "office_director"))
    admin = sign_in(app.test_client(), make_person("管理员", admin=True))
    applicant = sign_in(app.test_client(), make_person("申请人"))
    with seeded() as s:
        seat = s.scalars(select(HumanTask.position_id)).first() or 1
    answers = [
        office.get("/dashboard", query_string={"unit": value, "year": value}),
        office.get("/dashboard/export.csv", query_string={"table": "indicators", "year": value}),
        office.get("/inbox", query_string={"within": value, "page": value}),
        office.post(
            "/meetings/new",
            data={
                "kind": "plenary",
                "title": "会",
                "held_on": "2026-12-01",
                "chair": value,
                "members": [value, value],
            },
        ),
        admin.get("/admin/people", query_string={"page": value}),
        admin.post(
            f"/admin/positions/{seat}/hand-over", data={"successor": "existing", "person_id": value}
        ),
        applicant.post("/apply/new", data={"jurisdiction": "weixi", "revision": value}),
    ]
    assert [r.status_code for r in answers if r.status_code >= 500] == []
