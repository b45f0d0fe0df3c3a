"""Alembic: the schema comes up from an empty database, goes back down to nothing, and comes
up again — through every migration, on the test database's backend (on PostgreSQL in a schema
of its own, so the run's own tables are left alone)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, inspect

from engine.db import downgrade, make_engine, scratch_schema, upgrade


@pytest.fixture
def empty(database_url: str, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    if not database_url.startswith("postgresql"):
        engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
        yield engine
        engine.dispose()
        return
    with scratch_schema(database_url, f"duban_migrations_{uuid.uuid4().hex[:8]}") as schema:
        engine = make_engine(database_url, connect_args={"options": f"-csearch_path={schema}"})
        yield engine
        engine.dispose()


def test_down_to_empty_and_up_again(empty: Engine) -> None:
    upgrade(empty)
    tables = set(inspect(empty).get_table_names())
    assert {"human_task", "step_tally", "timer", "minutes", "indicator", "deferred_start"} <= tables
    downgrade(empty, "-1")  # one step back, then forward again
    upgrade(empty)
    downgrade(empty, "base")
    assert set(inspect(empty).get_table_names()) <= {"alembic_version"}
    upgrade(empty)
    assert set(inspect(empty).get_table_names()) == tables
