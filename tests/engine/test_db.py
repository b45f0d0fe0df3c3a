"""How transactions end on PostgreSQL: one that only read ends with COMMIT, which keeps the
connection's prepared statements (a ROLLBACK makes psycopg drop them all); one that wrote, or
failed, is rolled back as ever."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL: how psycopg keeps prepared statements")
    return engine


_WARMED = "SELECT CAST(:x AS integer) + 4242"


def _prepared(conn: Connection) -> int:
    """Whether the warmed statement is prepared on this connection (1) or not (0)."""
    found = conn.exec_driver_sql(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%+ 4242'"
    )
    return int(found.scalar_one())


def _warm(conn: Connection) -> None:
    """Run one statement often enough for psycopg to prepare it."""
    for _ in range(6):
        conn.execute(text(_WARMED), {"x": 1})
    conn.commit()


def test_a_transaction_that_only_read_keeps_the_prepared_statements(pg: Engine) -> None:
    with pg.connect() as conn:
        _warm(conn)
        assert _prepared(conn) == 1
        conn.commit()
        conn.execute(text(_WARMED), {"x": 2})
        conn.execute(text("SELECT 1 FROM jurisdiction FOR UPDATE"))
        conn.rollback()  # what a page view's session does at its end
        assert _prepared(conn) == 1


def test_a_transaction_that_wrote_is_still_rolled_back(pg: Engine) -> None:
    with pg.connect() as conn:
        conn.execute(text("CREATE TEMP TABLE scratch (n int)"))
        conn.commit()
        _warm(conn)
        conn.execute(text("SELECT count(*) FROM scratch"))
        conn.execute(text("INSERT INTO scratch VALUES (1)"))
        conn.rollback()
        assert conn.execute(text("SELECT count(*) FROM scratch")).scalar_one() == 0
        conn.commit()


def test_a_failed_read_is_rolled_back_and_the_connection_stays_usable(pg: Engine) -> None:
    with pg.connect() as conn:
        with pytest.raises(Exception, match="division by zero"):
            conn.execute(text("SELECT 1 / :zero"), {"zero": 0})
        conn.rollback()
        assert conn.execute(text("SELECT 2")).scalar_one() == 2
        conn.rollback()


def test_locks_taken_by_a_read_are_released_at_its_end(pg: Engine) -> None:
    with pg.connect() as holder, pg.connect() as other:
        holder.execute(text("CREATE TEMP TABLE IF NOT EXISTS t (n int)"))
        holder.commit()
        holder.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        assert not other.execute(text("SELECT pg_try_advisory_xact_lock(4242)")).scalar_one()
        other.rollback()
        holder.rollback()  # ends the read: COMMIT, which releases it all the same
        assert other.execute(text("SELECT pg_try_advisory_xact_lock(4242)")).scalar_one()
        other.rollback()
