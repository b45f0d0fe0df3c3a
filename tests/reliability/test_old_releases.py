"""Databases saved by earlier releases (tests/reliability/fixtures, made by make_fixtures.py
with each release's own code) upgrade with Alembic to the schema a new database gets, take the
current seed and processes as `duban seed` would, and carry on with the current code: every
open step is in its holders' inbox, every instance deserializes and agrees with its steps,
and every item, application and minutes runs to its end on the process version it started on
(tests/engine/test_deploy.py::test_running_instances_stay_on_their_version checks the same
for an instance of this release's processes)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from SpiffWorkflow.util.task import TaskState as SpiffState
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from engine import db
from engine.access import InboxFilter, inbox, viewer_for
from engine.clock import FixedClock
from engine.deploy import deploy_directory
from engine.directory import hand_over, load_directory
from engine.models import (
    Base,
    HumanTask,
    Instance,
    InstanceStatus,
    Person,
    Position,
    TaskState,
)
from engine.runtime import load_workflow
from engine.specs import SPEC_CACHE
from engine.tasklists import import_plan
from tests.conftest import DATA, PROCESSES
from tests.helpers import act, completed_count, open_steps
from tests.reliability.fixtures.make_fixtures import NOW, PG_SCHEMA

FIXTURES = Path(__file__).with_name("fixtures")
# The first release that ran an item end to end (one instance per item); the first with each
# unit's branch as an instance of its own (0001 rewritten); the first with branches grouped by
# element (0001 settled, then 0002); the previous release (0009).
RELEASES = ("872bcac", "9b98c15", "8060762", "5bbe5e2")
MAX_STEPS = 1000  # far more than the fixtures hold: a loop that never ends fails instead


@pytest.fixture
def later() -> FixedClock:
    """An hour after the fixtures were made."""
    return FixedClock(NOW + timedelta(hours=1))


def _sqlite(dump: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(dump.read_text())
    conn.close()
    engine = db.make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def _postgresql(dump: Path, url: str) -> Iterator[Engine]:
    """The release's pg_dump, restored into a schema of this test's own."""
    schema = f"duban_old_{uuid.uuid4().hex[:8]}"
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:  # the dump resets search_path
        # As bytes: the text is sent as it is, with no placeholders to look for.
        conn.execute(dump.read_text().replace(PG_SCHEMA, schema).encode())
    engine = db.make_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    yield engine
    engine.dispose()
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=RELEASES)
def old_database(request, database_url: str, tmp_path: Path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """A release's database, as that release left it (not yet upgraded)."""
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    dump = FIXTURES / f"release-{request.param}.{backend}.sql"
    if not dump.exists():
        pytest.skip(f"no {backend} fixture of release {request.param}")
    SPEC_CACHE.clear()  # process version ids of another database
    if backend == "postgresql":
        yield from _postgresql(dump, database_url)
    else:
        yield from _sqlite(dump, tmp_path)
    SPEC_CACHE.clear()


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _drift(engine: Engine) -> list[object]:
    """What Alembic would change to make the schema match the models (nothing, on a database
    migrated from empty)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


@dataclass(frozen=True)
class _Holder:
    """Just what viewer_for reads of an account."""

    id: int
    person_id: int
    is_admin: bool = False


def _in_inboxes(session: Session, steps: list[HumanTask], now: FixedClock) -> set[int]:
    """The open steps found in the inbox of a new holder of each step's position."""
    found: set[int] = set()
    for position_id in sorted({s.position_id for s in steps if s.position_id is not None}):
        position = session.get(Position, position_id)
        assert position is not None
        person = Person(name=f"接任者{position_id}")
        session.add(person)
        session.flush()
        hand_over(session, position, person, now())
        viewer = viewer_for(session, _Holder(0, person.id))
        rows, _ = inbox(session, viewer, now(), InboxFilter(scope="mine"), limit=MAX_STEPS)
        found |= {r.id for r in rows}
    return found


def _agrees_with_its_steps(session: Session, instance: Instance) -> None:
    """The stored state deserializes (from the serializer version it was saved with); its
    ready manual tasks are the instance's open steps and the tasks its branches run for."""
    workflow = load_workflow(session, instance)
    ready = {str(t.id) for t in workflow.get_tasks(state=SpiffState.READY, manual=True)}
    steps = select(HumanTask.spiff_task_id).where(
        HumanTask.instance_id == instance.id, HumanTask.state == TaskState.READY
    )
    children = select(Instance.parent_task_id, Instance.status).where(
        Instance.parent_id == instance.id
    )
    branches = {task_id: status for task_id, status in session.execute(children)}
    running = {t for t, status in branches.items() if status == InstanceStatus.RUNNING}
    where = f"instance {instance.id} ({instance.business_key})"
    # A branch that ended waits for its siblings: its parent task stays ready until then.
    assert ready - set(branches) == set(session.scalars(steps)), where
    assert running <= ready, where


def _versions(session: Session) -> dict[int, int]:
    rows = session.execute(select(Instance.id, Instance.process_version_id))
    return {instance_id: version_id for instance_id, version_id in rows}


def _reseed(sessions: sessionmaker[Session], now: FixedClock) -> dict[int, int]:
    """What an upgrade runs after the migrations (`duban seed`): the current directory, lists
    and processes, whose changes deploy as new versions. Returns each instance's version."""
    with sessions.begin() as s:
        versions = _versions(s)
        for path in sorted((DATA / "directory").glob("*.toml")):
            load_directory(s, path, now())
        for path in sorted((DATA / "tasklists").glob("*.toml")):
            import_plan(s, path)
        deploy_directory(s, PROCESSES, "upgrade")
    return versions


def _drive(sessions: sessionmaker[Session], now: FixedClock) -> int:
    """Complete every open step, one at a time (a decision may cancel other open steps)."""
    done = 0
    while done < MAX_STEPS:
        with sessions() as s:
            steps = open_steps(s)
        if not steps:
            break
        act(sessions, steps[0], now)
        done += 1
    return done


def test_an_old_release_upgrades_and_every_item_runs_to_its_end(old_database, later) -> None:  # type: ignore[no-untyped-def]
    old = _revision(old_database)
    db.upgrade(old_database)
    head = ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
    assert old is not None and _revision(old_database) == head
    assert _drift(old_database) == []  # the schema a new database gets
    sessions: sessionmaker[Session] = db.session_factory(old_database)
    versions = _reseed(sessions, later)

    with sessions.begin() as s:
        steps = open_steps(s)
        assert steps, "the fixture has open steps"
        assert {t.id for t in steps if t.position_id is not None} <= _in_inboxes(s, steps, later)
        for instance in s.scalars(select(Instance).where(Instance.status == "running")):
            _agrees_with_its_steps(s, instance)
        before = completed_count(s)

    done = _drive(sessions, later)
    with sessions() as s:
        assert open_steps(s) == []
        assert completed_count(s) == before + done
        top = select(Instance.status).where(Instance.parent_id.is_(None)).distinct()
        assert set(s.scalars(top)) == {InstanceStatus.COMPLETED}
        # The old instances ran to their end on the versions they started with.
        after = _versions(s)
        assert {i: after[i] for i in versions} == versions
