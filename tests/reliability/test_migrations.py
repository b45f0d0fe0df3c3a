"""Alembic: the schema comes up from an empty database, goes back down to nothing, and comes
up again — through every migration, on the test database's backend."""

from __future__ import annotations

from sqlalchemy import inspect

from engine.db import downgrade, make_engine, upgrade


def test_down_to_empty_and_up_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert {"human_task", "step_tally", "timer", "minutes", "indicator"} <= tables
    downgrade(engine, "-1")  # one step back, then forward again
    upgrade(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) == tables
    engine.dispose()
