"""Every field of every step form, a comment and the medical-assistance application, sent
values of every wrong type and size (property-based), through the JSON API and as a browser
posts them: never a 5xx; a value is accepted exactly when the field's rules allow it and is
stored as cleaned; a refusal is a 400 naming the refused fields, and stores nothing. Then
guessed ids on every step, item, attachment, application and notice address: always 404.

One world is built per module (items driven to each form's step); each example runs inside a
SAVEPOINT that is rolled back afterwards, so every example meets the same open steps."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
import werkzeug.urls  # noqa: F401  (registers the codec error handler the form parser uses)
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from engine import db
from engine.accounts import create_account, issue_token
from engine.assistance import APPLICATION_FORM, save_draft
from engine.clock import FixedClock, local_today
from engine.deploy import deploy_directory
from engine.directory import find_unit, hand_over, load_directory, position_of
from engine.forms import FORMS, Field
from engine.items import AttachmentStore, add_attachment
from engine.models import (
    Account,
    Application,
    Comment,
    HistoryEntry,
    HumanTask,
    Instance,
    Notification,
    Person,
    Position,
    TaskState,
)
from engine.routing import hand_out
from engine.specs import SPEC_CACHE
from engine.tasklists import import_plan
from tests.conftest import DATA, PROCESSES, _empty
from tests.helpers import act, open_steps
from tests.web.conftest import PASSWORD
from web import create_app

CLOCK = FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
TODAY = local_today(CLOCK())
SOON, LATER = (TODAY + timedelta(days=10)).isoformat(), (TODAY + timedelta(days=20)).isoformat()
API = "/api/v1"
EXAMPLES = 200
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    # The function-scoped fixtures are reset by hand: every example runs in its own savepoint.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STEP_FORMS = (
    "acknowledge",
    "plan",
    "contribute",
    "report",
    "consolidate",
    "review",
    "decide_extension",
)
# A valid answer per form, arranged so that every field's own rules alone decide: the
# extension fields are asked for (so each can be required), the review sends back (so its
# reason can be required), the extension is approved (so its new due date can be).
BASELINES: dict[str, dict[str, Any]] = {
    "acknowledge": {},
    "plan": {"plan": "计划", "support_due": SOON, "implement_due": SOON, "final_due": LATER},
    "contribute": {"action": "request_extension", "requested_due": LATER, "reason": "理由"},
    "report": {"action": "request_extension", "requested_due": LATER, "reason": "理由"},
    "consolidate": {"summary": "汇总"},
    "review": {"decision": "send_back", "reason": "理由"},
    "decide_extension": {"approved": True, "new_due": LATER},
}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
TRUE, FALSE = {"true", "yes", "on", "1"}, {"false", "no", "0"}
MAX_MONEY = Decimal("999999999.99")


# ---------------------------------------------------------------- the world


@dataclass(frozen=True)
class Holder:
    login: str
    token: str
    person_id: int


@dataclass(frozen=True)
class World:
    steps: dict[str, int]  # form -> an open step with that form
    holders: dict[str, Holder]  # form -> who may complete that step
    outsider: Holder  # a liaison of a unit in none of the items
    applicant: Holder
    attachment_id: int
    application_id: int
    notice_id: int
    item_ids: tuple[int, ...]


def _holder(session: Session, seat: Position | None, login: str) -> Holder:
    person = Person(name=login)
    session.add(person)
    session.flush()
    if seat is not None:
        hand_over(session, seat, person, CLOCK())
    account = create_account(session, person, login, PASSWORD)
    return Holder(login, issue_token(session, account, "tests"), person.id)


def _open(sessions: sessionmaker[Session], item: int, form: str) -> HumanTask | None:
    with sessions() as s:
        return next((t for t in open_steps(s, item) if t.form == form), None)


def _advance(sessions: sessionmaker[Session], item: int, form: str) -> HumanTask:
    """Complete the item's open steps until one with `form` is open; return it."""
    while (found := _open(sessions, item, form)) is None:
        with sessions() as s:
            steps = open_steps(s, item)
        assert steps, f"item {item} ended before a '{form}' step"
        for step in steps:
            act(sessions, step, CLOCK)
    return found


@pytest.fixture(scope="module")
def world(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sessions = db.session_factory(engine)
    with sessions.begin() as s:
        for path in sorted((DATA / "directory").glob("*.toml")):
            load_directory(s, path, CLOCK())
        for path in sorted((DATA / "tasklists").glob("*.toml")):
            import_plan(s, path)
        deploy_directory(s, PROCESSES, "test")
        handed = [
            *hand_out(s, "weixi-2023-15", [7, 9, 13, 19, 20], CLOCK()),
            *hand_out(s, "dehong-2023", [9], CLOCK()),
        ]
        items = {instance.business_key: instance.id for instance in handed}
    ack_item, ext_item = items["weixi-2023-15#7"], items["weixi-2023-15#9"]
    consolidate_item, review_item = items["weixi-2023-15#13"], items["weixi-2023-15#19"]
    plan_item, report_item = items["weixi-2023-15#20"], items["dehong-2023#9"]
    steps = {
        "acknowledge": _advance(sessions, ack_item, "acknowledge"),
        "plan": _advance(sessions, plan_item, "plan"),
        "report": _advance(sessions, report_item, "report"),
        "consolidate": _advance(sessions, consolidate_item, "consolidate"),
        "review": _advance(sessions, review_item, "review"),
    }
    asking = _advance(sessions, ext_item, "contribute")
    act(sessions, asking, CLOCK, action="request_extension", requested_due=LATER, reason="理由")
    steps["decide_extension"] = _advance(sessions, ext_item, "decide_extension")
    steps["contribute"] = _advance(sessions, ext_item, "contribute")
    with sessions.begin() as s:
        seats: dict[int, Holder] = {}  # one person a seat: a hand-over would unseat another
        for form, step in steps.items():
            if step.position_id not in seats:
                seat = s.get(Position, step.position_id)
                seats[step.position_id] = _holder(s, seat, f"holder-{form}")
        holders = {form: seats[step.position_id] for form, step in steps.items()}
        outsider = _holder(s, position_of(s, find_unit(s, "县民政局"), "liaison"), "outsider")
        applicant = _holder(s, None, "applicant")
        account = s.scalars(select(Account).where(Account.login == "applicant")).one()
        application = save_draft(s, account, {"jurisdiction": "weixi"}, CLOCK())
        ack = s.get(HumanTask, steps["acknowledge"].id)
        attachment = add_attachment(
            s,
            AttachmentStore(tmp_path_factory.mktemp("attachments")),
            s.get(Instance, ack_item),
            holders["acknowledge"].person_id,
            ack.position_id,
            "a.pdf",
            io.BytesIO(b"%PDF-1.4\n%%EOF\n"),
            CLOCK(),
            ack,
        )
        notice = Notification(
            person_id=holders["acknowledge"].person_id,
            event="task_assigned",
            context={},
            link=f"/tasks/{ack.id}",
            created_at=CLOCK(),
        )
        s.add(notice)
        s.flush()
        built = World(
            steps={form: step.id for form, step in steps.items()},
            holders=holders,
            outsider=outsider,
            applicant=applicant,
            attachment_id=attachment.id,
            application_id=application.id,
            notice_id=notice.id,
            item_ids=tuple(sorted(items.values())),
        )
    yield built
    _empty(engine)
    SPEC_CACHE.clear()


# ---------------------------------------------------------------- a rolled-back rig per test


@dataclass
class Rig:
    app: Flask
    conn: Connection
    sessions: sessionmaker[Session]
    signed_in: dict[str, FlaskClient]  # login -> a browser signed in as them

    @contextmanager
    def example(self) -> Iterator[None]:
        """One example's requests, undone afterwards (each request commits a savepoint)."""
        savepoint = self.conn.begin_nested()
        try:
            yield
        finally:
            savepoint.rollback()

    def client(self, holder: Holder | None = None) -> FlaskClient:
        """A browser, signed in as `holder` once per test (signing in writes nothing)."""
        if holder is None:
            return self.app.test_client()
        if holder.login not in self.signed_in:
            client = self.app.test_client()
            response = client.post("/login", data={"login": holder.login, "password": PASSWORD})
            assert response.status_code == 302
            self.signed_in[holder.login] = client
        return self.signed_in[holder.login]

    def state(self, step_id: int) -> tuple[Any, ...]:
        """What a refused request must leave as it was."""
        with self.sessions() as s:
            step = s.get(HumanTask, step_id)
            assert step is not None
            return (
                step.state,
                s.get(Instance, step.instance_id).revision,  # type: ignore[union-attr]
                s.scalar(select(func.count(HistoryEntry.id))),
                s.scalar(select(func.count(Comment.id))),
                s.scalar(select(func.count(Application.id))),
            )

    def stored(self, step_id: int) -> dict[str, Any] | None:
        with self.sessions() as s:
            step = s.get(HumanTask, step_id)
            assert step is not None and step.state == TaskState.COMPLETED
            return step.form_data


@pytest.fixture
def rig(
    world: World, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Rig]:
    for module in ("web.tasks", "web.api.views", "web.api.common", "web.assistance"):
        monkeypatch.setattr(f"{module}.utcnow", CLOCK)  # 'today' is the world's
    conn = engine.connect()
    outer = conn.begin()
    sessions = sessionmaker(
        bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "WTF_CSRF_ENABLED": False,
            "DUBAN_SESSIONS": sessions,
            "ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        }
    )
    yield Rig(app, conn, sessions, {})
    outer.rollback()
    conn.close()


# ---------------------------------------------------------------- what a field accepts


def _clean(f: Field, value: Any) -> tuple[bool, Any]:
    """(accepted, stored value) of one value for one field, by the rules the form states."""
    if value is None or value == "":
        return True, f.default
    if f.kind == "text":
        if not isinstance(value, str) or CONTROL.search(value):
            return False, None
        return len(value.strip()) <= f.max_length, value.strip()
    if f.kind == "bool":
        if isinstance(value, bool):
            return True, value
        if isinstance(value, str) and value.lower() in TRUE | FALSE:
            return True, value.lower() in TRUE
        return False, None
    if f.kind == "choice":
        return isinstance(value, str) and value in f.choices, value
    if f.kind == "date":
        if not isinstance(value, str) or not ISO_DAY.fullmatch(value.strip()):
            return False, None
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            return False, None
        return not (f.not_before_today and day < TODAY), day.isoformat()
    if f.kind == "money":
        amount = _money(value)
        return amount is not None, amount
    raise AssertionError(f.kind)


# Plain digits or digits grouped in threes by commas, an optional fraction: no sign, exponent,
# underscore, NaN or infinity.
AMOUNT = re.compile(r"([0-9]+|[0-9]{1,3}(,[0-9]{3})+)(\.[0-9]+)?")


def _money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    text = str(value).strip()
    if not AMOUNT.fullmatch(text):
        return None
    amount = Decimal(text.replace(",", ""))
    if amount > MAX_MONEY:
        return None
    return amount if amount == amount.quantize(Decimal("0.01")) else None


def _expect(form: str, data: dict[str, Any]) -> tuple[set[str], dict[str, Any]]:
    """The fields a submission of `data` is refused for (none: accepted), and the clean data."""
    fields = FORMS[form].fields
    bad: set[str] = set()
    clean: dict[str, Any] = {}
    for f in fields:
        ok, value = _clean(f, data.get(f.name))
        if ok:
            clean[f.name] = value
        else:
            bad.add(f.name)
    for f in fields:
        when = f.required_when
        needed = f.required or (when is not None and clean.get(when[0]) == when[1])
        if needed and f.name not in bad and clean.get(f.name) in (None, ""):
            bad.add(f.name)
    if not bad and form == "plan":
        bad = {n for n in ("support_due", "implement_due") if clean[n] > clean["final_due"]}
    return bad, clean


def _baseline(form: str, field: str) -> dict[str, Any]:
    if field == "content":  # required when the contribution or report is submitted
        return {"action": "submit" if form == "contribute" else "report"}
    return dict(BASELINES[form])


def _has(value: Any, test: Any) -> bool:
    """Whether `test` holds for any string or number anywhere in `value`, keys included."""
    if isinstance(value, dict):
        return any(_has(k, test) or _has(v, test) for k, v in value.items())
    if isinstance(value, list):
        return any(_has(v, test) for v in value)
    return bool(test(value))


def _unstorable(value: Any) -> bool:
    return isinstance(value, str) and ("\x00" in value or re.search("[\ud800-\udfff]", value))


def _not_json(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


# ---------------------------------------------------------------- values of every kind

DAYS = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
WRONG_DATES = st.one_of(
    DAYS.map(lambda d: d.strftime("%Y%m%d")),
    DAYS.map(lambda d: d.strftime("%d/%m/%Y")),
    DAYS.map(lambda d: f"{d.isoformat()}T00:00:00"),
    st.sampled_from(["2026-02-30", "2026-13-01", "2026-W49-1", "２０２６-１２-０１", "2026-1-5"]),
)
STRINGS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x20), max_size=6),  # control characters
    st.text(alphabet=st.characters(categories=["Cs", "Zl", "Cf"]), min_size=1, max_size=3),
    st.integers(1_990, 12_000).map(lambda n: "长" * n),  # around every limit
    st.sampled_from(["true", "FALSE", "on", "0", "yes ", "close", "send_back", " submit"]),
    st.sampled_from(["request_extension", "report", "None", "null", "NaN", "-0", "1e3"]),
    st.sampled_from(["1_000", "1,000.50", "10,00", "1,0000", "+5", " 12.30 ", "１２", "0x10"]),
    DAYS.map(date.isoformat),
    DAYS.map(lambda d: f" {d.isoformat()} "),
    WRONG_DATES,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),  # NaN and the infinities included: not JSON, refused as such
    STRINGS,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STRINGS, inner, max_size=3),
    max_leaves=5,
)


def _valid(f: Field) -> st.SearchStrategy[Any]:
    """Values that should pass, so that acceptance is exercised as much as refusal."""
    if f.kind == "choice":
        return st.sampled_from(f.choices)
    if f.kind == "bool":
        return st.booleans() | st.sampled_from(sorted(TRUE | FALSE))
    if f.kind == "date":
        return st.dates(TODAY, date(2099, 12, 31)).map(date.isoformat)
    if f.kind == "money":
        return st.decimals(0, 10_000, places=2).map(str)
    return st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=50)


FIELD_CASES = [(form, f) for form in STEP_FORMS for f in FORMS[form].fields]


# ---------------------------------------------------------------- step forms, through the API


@SETTINGS
@given(case=st.sampled_from(FIELD_CASES), data=st.data())
def test_every_step_field_through_the_api(
    rig: Rig, world: World, case: tuple[str, Field], data: st.DataObject
) -> None:
    form, field = case
    value = data.draw(JSON_VALUES | _valid(field), label=field.name)
    body = {**_baseline(form, field.name), field.name: value}
    step_id, holder = world.steps[form], world.holders[form]
    with rig.example():
        before = rig.state(step_id)
        response = rig.client().post(
            f"{API}/tasks/{step_id}/complete",
            headers={"Authorization": f"Bearer {holder.token}"},
            json={"data": body},
        )
        assert response.status_code < 500, response.get_data(as_text=True)
        answer = response.get_json()
        if _has(value, _not_json):
            assert response.status_code == 400 and "not valid JSON" in answer["error"]
        elif _has(received := json.loads(json.dumps(value)), _unstorable):
            assert response.status_code == 400 and f"body.data.{field.name}" in answer["error"]
        else:  # as JSON carries it: a pair of surrogate escapes is one character
            bad, clean = _expect(form, {**body, field.name: received})
            event("accepted" if not bad else "refused")
            if not bad:
                assert response.status_code == 200, answer
                assert rig.stored(step_id) == clean
                return
            assert response.status_code == 400 and set(answer["errors"]) == bad, answer
        assert rig.state(step_id) == before


# ---------------------------------------------------------------- step forms, as a browser posts


def _form_body(values: dict[str, bytes]) -> bytes:
    pairs = [(quote_from_bytes(k.encode()), quote_from_bytes(v)) for k, v in values.items()]
    return "&".join(f"{k}={v}" for k, v in pairs).encode()


def _as_posted(raw: bytes) -> str:
    # How the form parser reads bytes that are not UTF-8: kept, percent-escaped.
    return raw.decode("utf-8", "werkzeug.url_quote")


@SETTINGS
@given(case=st.sampled_from(FIELD_CASES), data=st.data())
def test_every_step_field_as_a_browser_posts_it(
    rig: Rig, world: World, case: tuple[str, Field], data: st.DataObject
) -> None:
    form, field = case
    raw = data.draw(
        st.binary(max_size=12)
        | STRINGS.map(lambda s: s.encode("utf-8", "surrogatepass"))
        | _valid(field).map(lambda v: str(v).lower().encode()),
        label=field.name,
    )
    posted = {k: str(v).lower().encode() for k, v in _baseline(form, field.name).items() if v}
    posted[field.name] = raw
    typed = {k: _as_posted(v) for k, v in posted.items()}
    for f in FORMS[form].fields:  # the handler's reading of checkboxes
        if f.kind == "bool":
            typed[f.name] = "true" if typed.get(f.name) else "false"
    step_id, holder = world.steps[form], world.holders[form]
    with rig.example():
        before = rig.state(step_id)
        response = rig.client(holder).post(
            f"/tasks/{step_id}",
            data=_form_body(posted),
            content_type="application/x-www-form-urlencoded",
        )
        assert response.status_code < 500, response.get_data(as_text=True)
        bad, clean = _expect(form, typed)
        event("accepted" if not bad else "refused")
        if not bad:
            assert response.status_code == 302, response.get_data(as_text=True)
            assert rig.stored(step_id) == clean
            return
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert set(re.findall(r'data-error="(\w+)"', page)) == bad
        assert rig.state(step_id) == before


# ---------------------------------------------------------------- comments


def _expected_comment(body: Any) -> str | None:
    """The comment stored for `body`, or None when it must be refused."""
    if not isinstance(body, str) or not body.strip() or CONTROL.search(body.strip()):
        return None
    return body.strip() if len(body.strip()) <= 4000 else None


@SETTINGS
@given(
    body=JSON_VALUES,
    raw=st.binary(max_size=12) | STRINGS.map(lambda s: s.encode("utf-8", "surrogatepass")),
)
def test_a_comment_of_any_kind(rig: Rig, world: World, body: Any, raw: bytes) -> None:
    step_id, holder = world.steps["acknowledge"], world.holders["acknowledge"]
    with rig.example():
        before = rig.state(step_id)
        response = rig.client().post(
            f"{API}/tasks/{step_id}/comments",
            headers={"Authorization": f"Bearer {holder.token}"},
            json={"body": body},
        )
        assert response.status_code < 500
        received = body if _has(body, _not_json) else json.loads(json.dumps(body))
        expected = _expected_comment(received)
        if expected is not None and not _has(received, _unstorable):
            assert response.status_code == 201 and response.get_json()["body"] == expected
        else:
            assert response.status_code == 400 and "body" in str(response.get_json())
            assert rig.state(step_id) == before
    with rig.example():
        before = rig.state(step_id)
        page = rig.client(holder).post(
            f"/tasks/{step_id}/comments",
            data=_form_body({"body": raw}),
            content_type="application/x-www-form-urlencoded",
        )
        assert page.status_code < 500
        expected = _expected_comment(_as_posted(raw))
        if expected is not None:
            assert page.status_code == 302
            with rig.sessions() as s:
                assert s.scalars(select(Comment.body).order_by(Comment.id.desc())).first() == (
                    expected
                )
        else:
            assert page.status_code == 400 and 'data-error="comment"' in page.get_data(True)
            assert rig.state(step_id) == before


# ---------------------------------------------------------------- the assistance application

APPLICATION_FIELDS = [f for f in APPLICATION_FORM.fields]
OPEN_JURISDICTIONS = {"weixi", "dehong"}


def _expected_application(f: Field, value: str) -> tuple[bool, Any]:
    """Accepted (as what) for a draft: the field's rules, then the application's own."""
    ok, clean = _clean(f, value)
    if not ok:
        return False, None
    if f.name == "jurisdiction":
        return clean in OPEN_JURISDICTIONS, clean
    if f.name == "resident_id":
        number = re.sub(r"\s+", "", clean).upper()
        return number == "" or re.fullmatch(r"[0-9X]{1,18}", number) is not None, number
    if f.kind == "date":
        return True, date.fromisoformat(clean) if clean else None
    return True, clean


@SETTINGS
@given(field=st.sampled_from(APPLICATION_FIELDS), data=st.data())
def test_every_application_field(rig: Rig, world: World, field: Field, data: st.DataObject) -> None:
    raw = data.draw(
        st.binary(max_size=12)
        | STRINGS.map(lambda s: s.encode("utf-8", "surrogatepass"))
        | _valid(field).map(lambda v: str(v).encode()),
        label=field.name,
    )
    posted = {"jurisdiction": b"weixi", field.name: raw}
    value = _as_posted(raw)
    ok, expected = _expected_application(field, value)
    event("accepted" if ok else "refused")
    with rig.example():
        before = rig.state(world.steps["acknowledge"])
        response = rig.client(world.applicant).post(
            "/apply/new", data=_form_body(posted), content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code < 500, response.get_data(as_text=True)
        if ok:
            assert response.status_code == 302, response.get_data(as_text=True)
            with rig.sessions() as s:
                row = s.scalars(select(Application).order_by(Application.id.desc())).first()
                attribute = "relationship_" if field.name == "relationship" else field.name
                stored = getattr(row, attribute) if field.name != "jurisdiction" else value
                assert stored == expected or (expected is None and stored == ""), (stored, value)
            return
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert set(re.findall(r'data-error="(\w+)"', page)) == {field.name}
        assert rig.state(world.steps["acknowledge"]) == before


# ---------------------------------------------------------------- guessed ids


def _web_paths(world: World, n: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/tasks/{n}"),
        ("POST", f"/tasks/{n}"),
        ("POST", f"/tasks/{n}/comments"),
        ("POST", f"/tasks/{n}/reveal"),
        ("POST", f"/tasks/{n}/remind"),
        ("POST", f"/tasks/{n}/application-files/{n}"),
        ("GET", f"/attachments/{n}"),
        ("GET", f"/apply/{n}"),
        ("POST", f"/apply/{n}"),
        ("POST", f"/apply/{n}/withdraw"),
        ("GET", f"/apply/{n}/letter"),
        ("GET", f"/apply/{n}/files/{n}"),
        ("GET", f"/notifications/{n}"),
    ]


def _api_paths(n: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"{API}/tasks/{n}"),
        ("POST", f"{API}/tasks/{n}/complete"),
        ("POST", f"{API}/tasks/{n}/comments"),
        ("POST", f"{API}/tasks/{n}/attachments"),
        ("GET", f"{API}/items/{n}"),
        ("GET", f"{API}/attachments/{n}"),
    ]


def _ids(world: World) -> st.SearchStrategy[str]:
    known = [
        *world.steps.values(),
        *world.item_ids,
        world.attachment_id,
        world.application_id,
        world.notice_id,
    ]
    return st.one_of(
        st.sampled_from(known).map(str),
        st.tuples(st.sampled_from(known), st.integers(-3, 3)).map(lambda t: str(t[0] + t[1])),
        st.integers(-(2**70), 2**70).map(str),
        st.sampled_from(["0", "00", "2147483647", "2147483648", "9" * 40, "1.0", "0x10", "１"]),
        st.text(min_size=1, max_size=8).map(lambda t: quote_from_bytes(t.encode("utf-8"))),
    )


@settings(SETTINGS, max_examples=50)
@given(data=st.data())
def test_guessing_ids_finds_nothing(rig: Rig, world: World, data: st.DataObject) -> None:
    guess = data.draw(_ids(world), label="id")
    with rig.example():
        before = rig.state(world.steps["acknowledge"])
        browser = rig.client(world.outsider)
        for method, path in _web_paths(world, guess):
            response = browser.open(path, method=method, data={"note": "x", "body": "x"})
            assert response.status_code == 404, (method, path, response.status_code)
        api = rig.client()
        headers = {"Authorization": f"Bearer {world.outsider.token}"}
        for method, path in _api_paths(guess):
            response = api.open(path, method=method, headers=headers, json={"data": {}})
            assert response.status_code == 404, (method, path, response.status_code)
            assert response.mimetype == "application/json"
        assert rig.state(world.steps["acknowledge"]) == before
