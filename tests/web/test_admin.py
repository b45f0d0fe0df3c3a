"""The administration area: only administrators get in; hand-overs move open work; accounts;
deployments; everything a user typed is escaped; every POST needs the CSRF token."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from engine.clock import FixedClock
from engine.directory import find_unit, holders, jurisdiction, position_of
from engine.models import (
    Account,
    HumanTask,
    Person,
    Position,
    PositionKind,
    ProcessVersion,
    TaskState,
    Unit,
    UnitKind,
)
from engine.routing import hand_out
from tests.conftest import PROCESSES, ROOT
from tests.web.conftest import PASSWORD, Someone, sign_in

WEB = ROOT / "web"
Maker = Callable[..., Someone]
AGRICULTURE = "县农业农村局"


def _ids(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as s:
        return {
            "unit_id": s.scalars(select(Unit.id)).first() or 0,
            "position_id": s.scalars(select(Position.id)).first() or 0,
            "person_id": s.scalars(select(Person.id)).first() or 0,
            "account_id": s.scalars(select(Account.id)).first() or 0,
            "version_id": s.scalars(select(ProcessVersion.id)).first() or 0,
        }


def _admin_urls(app: Flask, ids: dict[str, int]) -> list[tuple[str, str]]:
    """Every (method, URL) of the blueprint, read from the URL map so none is forgotten."""
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.endpoint.startswith("admin."):
                continue
            url = url_for(rule.endpoint, **{name: ids[name] for name in rule.arguments})
            urls += [(m, url) for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    assert len(urls) >= 14, urls
    return urls


def _open_steps(sessions: sessionmaker[Session], position_id: int) -> list[int]:
    with sessions() as s:
        return list(
            s.scalars(
                select(HumanTask.id).where(
                    HumanTask.position_id == position_id, HumanTask.state == TaskState.READY
                )
            )
        )


def _liaison(sessions: sessionmaker[Session], unit: str = AGRICULTURE) -> int:
    with sessions() as s:
        return position_of(s, find_unit(s, unit), "liaison").id


def _page(client: FlaskClient, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _versions(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count(ProcessVersion.id))) or 0


# ---------------------------------------------------------------- who gets in


def test_non_admins_get_403_on_every_admin_url(
    app: Flask, client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    sign_in(client, make_person("liaison", AGRICULTURE))
    for method, url in _admin_urls(app, _ids(seeded)):
        assert client.open(url, method=method).status_code == 403, (method, url)


def test_anonymous_visitors_are_sent_to_sign_in(
    app: Flask, client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    make_person("someone", AGRICULTURE)
    for method, url in _admin_urls(app, _ids(seeded)):
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"].startswith("/login"), (method, url)


def test_admin_sees_the_index_and_every_list(client: FlaskClient, make_person: Maker) -> None:
    sign_in(client, make_person("admin", admin=True))
    page = _page(client, "/admin/")
    for area in ("/admin/units", "/admin/people", "/admin/deployments"):
        assert f'href="{area}"' in page
    assert "系统管理" in _page(client, "/inbox")  # the navigation link, in the default locale
    units = _page(client, "/admin/units")
    assert AGRICULTURE in units and "县（市、区）级" in units
    assert units.index("迪庆藏族自治州") < units.index("维西傈僳族自治县") < units.index("保和镇")
    only = _page(client, "/admin/units?jurisdiction=weixi.baohe")
    assert "保和镇" in only and AGRICULTURE not in only
    assert "task_routing" in _page(client, "/admin/deployments")


# ---------------------------------------------------------------- hand-over


def test_hand_over_moves_open_work_to_a_new_person_with_an_account(
    client: FlaskClient,
    make_person: Maker,
    seeded: sessionmaker[Session],
    clock: FixedClock,
) -> None:
    admin = make_person("admin", admin=True)
    predecessor = make_person("predecessor", AGRICULTURE)
    with seeded.begin() as s:
        hand_out(s, "weixi-2023-15", [7], clock())
    seat = _liaison(seeded)
    waiting = _open_steps(seeded, seat)
    assert waiting
    sign_in(client, admin)
    form = {
        "successor": "new",
        "name": "和新民",
        "title": "副局长",
        "with_account": "1",
        "login": "hexinmin",
        "password": PASSWORD,
    }
    response = client.post(f"/admin/positions/{seat}/hand-over", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    unit_page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f"{len(waiting)} 项待办事项已转由接任人员办理" in unit_page
    assert "和新民" in unit_page and "predecessor" in unit_page  # holding history: both
    with seeded() as s:
        assert [p.name for p in holders(s, seat)] == ["和新民"]
    client.post("/logout")
    sign_in(client, Someone("hexinmin", 0, seat, ""))
    inbox = _page(client, "/inbox")
    for step in waiting:
        assert f'data-step="{step}"' in inbox
    client.post("/logout")
    sign_in(client, predecessor)
    assert 'data-step="' not in _page(client, "/inbox")


def test_hand_over_to_an_existing_person(
    client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    sign_in(client, make_person("admin", admin=True))
    successor = make_person("successor")
    seat = _liaison(seeded)
    response = client.post(
        f"/admin/positions/{seat}/hand-over",
        data={"successor": "existing", "person_id": successor.person_id},
        query_string={"lang": "en"},
    )
    assert response.status_code == 302
    assert "0 open steps now belong to the successor." in _page(
        client, response.headers["Location"]
    )
    again = client.post(
        f"/admin/positions/{seat}/hand-over",
        data={"successor": "existing", "person_id": successor.person_id},
    )
    assert again.status_code == 400
    assert "人员：successor 已在此岗位任职。" in again.get_data(as_text=True)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"successor": "new", "name": ""}, "姓名：请填写接任人员姓名。"),
        ({"successor": "existing", "person_id": "999999"}, "人员：请从列表中选择接任人员。"),
        ({"successor": "sideways"}, "接任人员：请选择已有人员或填写新增人员。"),
        ({"successor": "new", "name": "甲", "email": "nope"}, "电子邮箱："),
        (
            {"successor": "new", "name": "甲", "with_account": "1", "login": "", "password": "x"},
            "账号：必填。",
        ),
        (
            {
                "successor": "new",
                "name": "甲",
                "with_account": "1",
                "login": "jia",
                "password": "x",
            },
            "密码：至少 8 个字符。",
        ),
        (
            {
                "successor": "new",
                "name": "甲",
                "with_account": "1",
                "login": "admin",
                "password": PASSWORD,
            },
            "账号：“admin”已被使用。",
        ),
    ],
)
def test_hand_over_form_is_checked_before_anything_changes(
    client: FlaskClient,
    make_person: Maker,
    seeded: sessionmaker[Session],
    form: dict[str, str],
    message: str,
) -> None:
    sign_in(client, make_person("admin", admin=True))
    holder = make_person("holder", AGRICULTURE)
    seat = _liaison(seeded)
    response = client.post(f"/admin/positions/{seat}/hand-over", data=form)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    with seeded() as s:
        assert [p.id for p in holders(s, seat)] == [holder.person_id]
        assert s.scalar(select(func.count(Person.id)).where(Person.name == "甲")) == 0


def test_adding_a_position_the_unit_lacks(
    client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    sign_in(client, make_person("admin", admin=True))
    with seeded() as s:
        unit_id = find_unit(s, AGRICULTURE).id
    url = f"/admin/units/{unit_id}/positions"
    assert client.post(url, data={"kind": "reviewer"}).status_code == 302
    with seeded() as s:
        kinds = {p.kind for p in s.scalars(select(Position).where(Position.unit_id == unit_id))}
    assert PositionKind.REVIEWER in kinds
    assert "审核人" in _page(client, f"/admin/units/{unit_id}")
    assert client.post(url, data={"kind": "reviewer"}).status_code == 400
    assert client.post(url, data={"kind": "emperor"}).status_code == 400


# ---------------------------------------------------------------- people and accounts


def test_creating_an_account_and_resetting_its_password(
    client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    sign_in(client, make_person("admin", admin=True))
    with seeded.begin() as s:
        person = Person(name="李四")
        s.add(person)
        s.flush()
        person_id = person.id
    url = f"/admin/people/{person_id}/account"
    short = client.post(url, data={"login": "lisi", "password": "short"})
    assert short.status_code == 400 and "密码：至少 8 个字符。" in short.get_data(as_text=True)
    taken = client.post(url, data={"login": "admin", "password": PASSWORD})
    assert taken.status_code == 400
    assert client.post(url, data={"login": "lisi", "password": PASSWORD}).status_code == 302
    assert "lisi" in _page(client, "/admin/people?q=lisi")
    assert client.post(url, data={"login": "lisi2", "password": PASSWORD}).status_code == 400
    with seeded() as s:
        account = s.scalars(select(Account).where(Account.login == "lisi")).one()
        assert not account.is_admin
    reset = f"/admin/accounts/{account.id}/password"
    assert client.post(reset, data={"password": "1234"}).status_code == 400
    assert client.post(reset, data={"password": "a new long password"}).status_code == 302
    client.post("/logout")
    assert client.post("/login", data={"login": "lisi", "password": PASSWORD}).status_code == 200
    response = client.post("/login", data={"login": "lisi", "password": "a new long password"})
    assert response.status_code == 302


def test_activation_and_admin_rights_but_never_on_oneself(
    client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    admin = make_person("admin", admin=True)
    other = make_person("other", AGRICULTURE)
    sign_in(client, admin)
    with seeded() as s:
        mine, theirs = (
            s.scalars(select(Account.id).where(Account.login == login)).one()
            for login in ("admin", "other")
        )
    refused = client.post(f"/admin/accounts/{mine}/active", data={"active": "0"})
    assert refused.status_code == 400
    assert "不能停用本人的账号。" in refused.get_data(as_text=True)
    assert client.post(f"/admin/accounts/{mine}/admin", data={"is_admin": "0"}).status_code == 400
    assert client.post(f"/admin/accounts/{mine}/admin", data={}).status_code == 400
    assert client.post(f"/admin/accounts/{theirs}/admin", data={"is_admin": "1"}).status_code == 302
    assert client.post(f"/admin/accounts/{theirs}/active", data={"active": "0"}).status_code == 302
    with seeded() as s:
        me, them = s.get(Account, mine), s.get(Account, theirs)
        assert me is not None and me.active and me.is_admin
        assert them is not None and them.is_admin and not them.active
    client.post("/logout")
    assert (
        client.post("/login", data={"login": other.login, "password": PASSWORD}).status_code == 200
    )


# ---------------------------------------------------------------- deployments


def _upload(client: FlaskClient, files: dict[str, bytes]) -> tuple[int, str]:
    data = {"files": [(io.BytesIO(content), name) for name, content in files.items()]}
    response = client.post("/admin/deployments", data=data, content_type="multipart/form-data")
    if response.status_code == 302:
        return 302, client.get(response.headers["Location"]).get_data(as_text=True)
    return response.status_code, response.get_data(as_text=True)


def test_deploying_the_shipped_processes_changes_nothing(
    client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    sign_in(client, make_person("admin", admin=True))
    before = _versions(seeded)
    shipped = {p.name: p.read_bytes() for p in sorted(PROCESSES.glob("*.bpmn"))}
    tables = {p.name: p.read_bytes() for p in sorted(PROCESSES.glob("*.dmn"))}
    status, page = _upload(client, shipped | tables)
    assert status == 302, page
    for name in shipped:
        assert f"{Path(name).stem} 第 1 版（内容未变）" in page
    assert _versions(seeded) == before


def test_a_broken_file_is_reported_and_nothing_is_stored(
    client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    sign_in(client, make_person("admin", admin=True))
    before = _versions(seeded)
    changed = (PROCESSES / "unit_progress.bpmn").read_bytes() + b"\n<!-- changed -->\n"
    broken = b'<?xml version="1.0"?>\n<definitions xmlns="nope">\n<process id="x">\n'
    status, page = _upload(client, {"unit_progress.bpmn": changed, "broken.bpmn": broken})
    assert status == 400
    assert "未部署任何文件" in page
    assert re.search(r"<code>broken\.bpmn:\d+: malformed XML", page), page
    assert "duban-deploy-" not in page  # problems name the file, not the temporary directory
    assert _versions(seeded) == before
    status, page = _upload(client, {"notes.txt": b"hello"})
    assert status == 400 and "notes.txt：只能部署 .bpmn 和 .dmn 文件。" in page
    assert _upload(client, {})[0] == 400
    status, page = _upload(client, {"unit_progress.bpmn": changed})
    assert status == 302 and "unit_progress 第 2 版（新版本）" in page
    assert _versions(seeded) == before + 1
    with seeded() as s:
        new = s.scalars(select(ProcessVersion).where(ProcessVersion.version == 2)).one()
        assert new.deployed_by == "admin"
    source = _page(client, f"/admin/deployments/{new.id}")
    assert "&lt;!-- changed --&gt;" in source and "<!-- changed -->" not in source


# ---------------------------------------------------------------- escaping, CSRF, catalogue


def test_names_are_escaped_everywhere(
    client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    evil = "<script>alert(1)</script>"
    sign_in(client, make_person("admin", admin=True))
    with seeded.begin() as s:
        unit = Unit(jurisdiction_id=jurisdiction(s, "weixi").id, name=evil, kind=UnitKind.OTHER)
        s.add(unit)
        s.flush()
        unit_id = unit.id
    response = client.post(f"/admin/units/{unit_id}/positions", data={"kind": "liaison"})
    assert response.status_code == 302
    seat = _liaison(seeded, evil)
    response = client.post(
        f"/admin/positions/{seat}/hand-over", data={"successor": "new", "name": evil}
    )
    assert response.status_code == 302
    pages = [client.get(response.headers["Location"]).get_data(as_text=True)]  # with the flash
    pages += [
        _page(client, url)
        for url in ("/admin/units", "/admin/people", f"/admin/positions/{seat}/hand-over")
    ]
    for page in pages:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert evil not in page


def test_posts_without_the_csrf_token_are_refused(
    app: Flask, client: FlaskClient, make_person: Maker, seeded: sessionmaker[Session]
) -> None:
    admin = make_person("admin", admin=True)
    other = make_person("other")
    sign_in(client, admin)
    app.config["WTF_CSRF_ENABLED"] = True
    with seeded() as s:
        account_id = s.scalars(select(Account.id).where(Account.login == other.login)).one()
    url = f"/admin/accounts/{account_id}/admin"
    assert client.post(url, data={"is_admin": "1"}).status_code == 400
    page = _page(client, f"/admin/people/{other.person_id}")
    tokens = re.findall(r'name="csrf_token" value="([^"]+)"', page)
    forms = page.count("<form")
    assert tokens and len(tokens) == forms  # every form on the page carries it
    response = client.post(url, data={"is_admin": "1", "csrf_token": tokens[0]})
    assert response.status_code == 302
    with seeded() as s:
        assert s.scalars(select(Account.is_admin).where(Account.id == account_id)).one()


def test_every_message_has_a_chinese_translation() -> None:
    sources = [(WEB / "admin.py", "python")]
    sources += [(p, "jinja2") for p in sorted((WEB / "templates" / "admin").glob("*.html"))]
    used = {
        message
        for path, method in sources
        for _line, message, _comments, _context in extract_from_file(
            method, str(path), keywords={"_": None, "_l": None, "gettext": None}
        )
    }
    catalogues = WEB / "translations" / "admin"
    with (catalogues / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        zh = {m.id: m.string for m in read_po(fh, locale="zh_CN") if m.id}
    with (catalogues / "en" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        en = {m.id for m in read_po(fh, locale="en") if m.id}
    assert used and used <= set(zh) and used <= en
    assert all(zh[m] for m in used), [m for m in used if not zh[m]]
    for msgid in used:
        placeholders = sorted(re.findall(r"%\(\w+\)[sd]", str(msgid)))
        assert placeholders == sorted(re.findall(r"%\(\w+\)[sd]", zh[msgid])), msgid
