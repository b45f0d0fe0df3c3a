"""Fixtures shared by every test: a real database (SQLite by default, PostgreSQL when
DUBAN_TEST_DATABASE_URL says so), migrated once per run and emptied after each test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from engine import db
from engine.clock import FixedClock
from engine.models import Base
from engine.specs import SPEC_CACHE
from engine.workflow_cache import WORKFLOWS

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
PROCESSES = ROOT / "processes"


def _database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DUBAN_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'duban.sqlite3'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield _database_url(tmp_path_factory)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    if database_url.startswith("postgresql"):
        # A schema of our own per run, so parallel runs and leftovers never collide.
        with db.scratch_schema(database_url, f"duban_test_{uuid.uuid4().hex[:8]}") as schema:
            eng = db.make_engine(database_url, connect_args={"options": f"-csearch_path={schema}"})
            db.upgrade(eng)
            yield eng
            eng.dispose()
    else:
        eng = db.make_engine(database_url)
        db.upgrade(eng)
        yield eng
        eng.dispose()


def _empty(engine: Engine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            conn.execute(text("UPDATE jurisdiction SET office_unit_id = NULL"))
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    yield db.session_factory(engine)
    _empty(engine)
    SPEC_CACHE.clear()  # emptied tables hand out the same version ids again
    WORKFLOWS.clear()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))


@pytest.fixture
def seeded(sessions: sessionmaker[Session], clock: FixedClock) -> sessionmaker[Session]:
    """Both seed directories and task lists, and the processes, as `duban seed` loads them."""
    from engine.deploy import deploy_directory
    from engine.directory import load_directory
    from engine.tasklists import import_plan

    with sessions.begin() as session:
        for path in sorted((DATA / "directory").glob("*.toml")):
            load_directory(session, path, clock())
        for path in sorted((DATA / "tasklists").glob("*.toml")):
            import_plan(session, path)
        deploy_directory(session, PROCESSES, "test")
    return sessions
