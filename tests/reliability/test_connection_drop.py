"""The database connection drops: in the middle of a request, the request fails cleanly (503, in
the user's language, nothing half-written) and the next one succeeds; between requests, while
the connection waits in the pool, the next request does not notice; with the server out of
reach, every request gets the same clean 503.

PostgreSQL only: the server ends a request's connection (pg_terminate_backend from an
administrator's connection), at a chosen statement of the request's transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from engine import db
from engine.models import HistoryEntry, HumanTask, Instance, TaskState
from engine.routing import hand_out
from tests.helpers import completed_count, open_steps
from tests.web import conftest as web_fixtures
from tests.web.conftest import Someone, sign_in
from web import create_app

# The web tests' app, browser and people, for these tests too.
app = web_fixtures.app
client = web_fixtures.client
make_person = web_fixtures.make_person

API = "/api/v1"
ZH = "暂时无法连接数据库，本次请求未能完成。请稍后重试。"
EN = "The database could not be reached, so this request was not completed."


@pytest.fixture(autouse=True)
def _postgresql_only(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: an SQLite file has no server connection to lose")


@pytest.fixture
def admin(database_url: str) -> Iterator[Engine]:
    """A connection of the administrator's, apart from the app's pool."""
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def _terminate(admin: Engine, pid: int) -> None:
    with admin.begin() as conn:  # waits until the backend has gone (5 s at most)
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})


@contextmanager
def dropped(engine: Engine, admin: Engine, at: str) -> Iterator[list[int]]:
    """The server ends the connection just before the first statement starting with `at` (or
    just before the transaction's COMMIT) is sent. Yields the backends it ended."""
    ended: list[int] = []

    def before_statement(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if not ended and statement.startswith(at):
            ended.append(cursor.connection.info.backend_pid)
            _terminate(admin, ended[-1])

    def before_commit(conn: Any) -> None:
        if not ended and at == "COMMIT":
            ended.append(conn.connection.driver_connection.info.backend_pid)
            _terminate(admin, ended[-1])

    event.listen(engine, "before_cursor_execute", before_statement)
    event.listen(engine, "commit", before_commit)
    try:
        yield ended
    finally:
        event.remove(engine, "before_cursor_execute", before_statement)
        event.remove(engine, "commit", before_commit)


@pytest.fixture
def step(seeded: sessionmaker[Session], clock) -> HumanTask:  # type: ignore[no-untyped-def]
    """县农业农村局's acknowledgement of Weixi task 7."""
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    with seeded() as s:
        return next(t for t in open_steps(s, item.id) if t.unit.name == "县农业农村局")


@pytest.fixture
def liaison(make_person) -> Someone:  # type: ignore[no-untyped-def]
    return make_person("农业联络员", "县农业农村局")


def _record(seeded: sessionmaker[Session], step: HumanTask) -> tuple[TaskState, int, int, int]:
    """The step's state, its instance's revision, its history lines, completions recorded."""
    with seeded() as s:
        task = s.get(HumanTask, step.id)
        instance = s.get(Instance, step.instance_id)
        assert task is not None and instance is not None
        lines = select(func.count()).where(HistoryEntry.instance_id == step.instance_id)
        return task.state, instance.revision, s.scalar(lines) or 0, completed_count(s)


def _clean_503(body: str) -> None:
    assert "Traceback" not in body and "OperationalError" not in body and "psycopg" not in body


# Half-way through the step's statements (its state and timers written, not its history),
# and with every statement sent, at the COMMIT.
@pytest.mark.parametrize("where", ["INSERT INTO history", "COMMIT"])
def test_a_step_whose_connection_drops_fails_cleanly_and_the_next_try_completes_it(  # type: ignore[no-untyped-def]
    client, engine, admin, seeded, step, liaison, where
) -> None:
    sign_in(client, liaison)
    before = _record(seeded, step)
    with dropped(engine, admin, where) as ended:
        response = client.post(f"/tasks/{step.id}", data={"note": "收到"})
    assert ended, "the connection was ended inside the request"
    body = response.get_data(as_text=True)
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert ZH in body and "请先刷新该页面" in body and response.headers["Retry-After"]
    _clean_503(body)
    assert _record(seeded, step) == before  # nothing half-written
    assert before[0] == TaskState.READY

    again = client.post(f"/tasks/{step.id}", data={"note": "收到"})
    assert again.status_code == 302, again.get_data(as_text=True)
    state, revision, lines, completions = _record(seeded, step)
    assert state == TaskState.COMPLETED and completions == before[3] + 1
    assert revision > before[1] and lines > before[2]


def test_the_api_answers_503_as_json_in_the_callers_language(  # type: ignore[no-untyped-def]
    client, engine, admin, seeded, step, liaison
) -> None:
    headers = {"Authorization": f"Bearer {liaison.token}", "Accept-Language": "en"}
    path = f"{API}/tasks/{step.id}/complete"
    before = _record(seeded, step)
    with dropped(engine, admin, "UPDATE human_task"):
        response = client.post(path, headers=headers, json={"data": {"note": "收到"}})
    assert response.status_code == 503 and response.mimetype == "application/json"
    assert response.get_json() == {"error": ZH}  # the account's language, not the header's
    assert _record(seeded, step) == before
    again = client.post(path, headers=headers, json={"data": {"note": "收到"}})
    assert again.status_code == 200, again.get_json()
    assert _record(seeded, step)[0] == TaskState.COMPLETED


def _pooled_backends(engine: Engine) -> list[int]:
    """The server processes of every connection waiting in the pool (all checked out at once,
    so each is seen, then all put back)."""
    held = [engine.raw_connection() for _ in range(engine.pool.checkedin())]
    pids = [c.driver_connection.info.backend_pid for c in held]
    for conn in held:
        conn.close()
    return pids


def test_connections_dropped_while_idle_in_the_pool_go_unnoticed(  # type: ignore[no-untyped-def]
    client, engine, admin, seeded, step, liaison
) -> None:
    sign_in(client, liaison)
    assert client.get("/inbox").status_code == 200
    idle = _pooled_backends(engine)
    assert idle, "the pool keeps connections between requests"
    for pid in idle:  # a server restart, or an administrator, ends every one of them
        _terminate(admin, pid)
    inbox = client.get("/inbox")
    assert inbox.status_code == 200 and f"/tasks/{step.id}" in inbox.get_data(as_text=True)
    assert client.post(f"/tasks/{step.id}", data={"note": "收到"}).status_code == 302
    assert _record(seeded, step)[0] == TaskState.COMPLETED
    assert not set(idle) & set(_pooled_backends(engine))  # each was replaced, none reused


@pytest.fixture
def unreachable(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a server nobody answers for (nothing listens on port 1)."""
    url = make_url(database_url).set(host="127.0.0.1", port=1)
    engine = db.make_engine(url.render_as_string(hide_password=False))
    yield db.session_factory(engine)
    engine.dispose()


def test_a_server_out_of_reach_gets_the_same_clean_503(  # type: ignore[no-untyped-def]
    client: FlaskClient, unreachable, liaison, tmp_path
) -> None:
    sign_in(client, liaison)
    cookie = client.get_cookie("session")
    assert cookie is not None
    config = {"TESTING": True, "SECRET_KEY": "test-secret", "DUBAN_SESSIONS": unreachable}
    down = create_app({**config, "ATTACHMENTS_DIR": str(tmp_path)}).test_client()
    down.set_cookie("session", cookie.value)
    page = down.get("/inbox", headers={"Accept-Language": "en"})
    assert page.status_code == 503
    assert EN in page.get_data(as_text=True)  # the account is not loaded: the browser's
    _clean_503(page.get_data(as_text=True))
    api = down.get(f"{API}/inbox", headers={"Authorization": f"Bearer {liaison.token}"})
    assert api.status_code == 503 and api.get_json()["error"] == ZH


COLLIDED = "有人在同一时刻修改了此项，本次提交未保存。请重试。"


def test_a_step_that_collides_with_another_transaction_is_a_clean_409(  # type: ignore[no-untyped-def]
    client, engine, admin, seeded, step, liaison
) -> None:
    """Another transaction holds the item's row past the request's lock timeout (as in a
    deadlock, PostgreSQL undoes the request's transaction): a 409 to send again, nothing kept."""

    def short_wait(conn: Any) -> None:  # every transaction waits for a lock 100 ms at most
        conn.exec_driver_sql("SET LOCAL lock_timeout = '100ms'")

    headers = {"Authorization": f"Bearer {liaison.token}"}
    path = f"{API}/tasks/{step.id}/complete"
    sign_in(client, liaison)
    before = _record(seeded, step)
    event.listen(engine, "begin", short_wait)
    try:
        with engine.begin() as holder:  # the test schema, on a connection of its own
            holder.execute(
                text("SELECT id FROM instance WHERE id = :id FOR UPDATE"), {"id": step.instance_id}
            )
            response = client.post(path, headers=headers, json={"data": {"note": "收到"}})
            page = client.post(f"/tasks/{step.id}", data={"note": "收到"})
    finally:
        event.remove(engine, "begin", short_wait)
    assert response.status_code == 409 and response.get_json() == {"error": COLLIDED}
    body = page.get_data(as_text=True)
    assert page.status_code == 409 and COLLIDED in body
    _clean_503(body)
    assert _record(seeded, step) == before
    again = client.post(path, headers=headers, json={"data": {"note": "收到"}})
    assert again.status_code == 200, again.get_json()
    assert _record(seeded, step)[0] == TaskState.COMPLETED
