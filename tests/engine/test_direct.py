"""Writes sent to the driver directly (engine.direct) store what SQLAlchemy would have stored,
fire the engine's cursor events, and fail as SQLAlchemy's own errors. Deferred writes run in
the order asked, before anything else the transaction runs, and only if it commits."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, event, exc, insert, select, update

from engine.direct import Direct, defer, defer_many, execute, execute_many, rows, rows_each
from engine.errors import Conflict
from engine.models import HistoryEntry, Instance, Timer, TimerKind, TimerState
from engine.routing import hand_out

_TIMERS = Direct(insert(Timer))
_DONE = Direct(
    update(Timer)
    .where(Timer.spiff_task_id == "b", Timer.state == TimerState.WAITING)
    .values(state=TimerState.DONE)
)
_LINE = Direct(insert(HistoryEntry).returning(HistoryEntry.id))


def test_values_are_stored_as_sqlalchemy_would_store_them(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    rows = [
        {
            "instance_id": item.id,
            "spiff_task_id": spiff_id,
            "element_id": "remind",
            "host_element_id": "report",
            "kind": TimerKind.REMINDER,
            "fire_at": at,
            "state": TimerState.WAITING,
            "fired": 0,
        }
        for spiff_id in ("a", "b")
    ]
    with seeded.begin() as s:
        execute_many(s.connection(), _TIMERS, rows)
        assert execute(s.connection(), _DONE, {}).rowcount == 1  # a literal in the WHERE
        line_id = execute(
            s.connection(),
            _LINE,
            {
                "instance_id": item.id,
                "human_task_id": None,
                "action": "noted",
                "actor_person_id": None,
                "actor_position_id": None,
                "actor_label": "测试",
                "data": {"说明": "收到", "n": [1, 2]},
                "at": at,
            },
        ).fetchone()[0]
    with seeded() as s:
        timers = {
            t.spiff_task_id: t for t in s.scalars(select(Timer).where(Timer.element_id == "remind"))
        }
        assert timers["a"].state == TimerState.WAITING and timers["b"].state == TimerState.DONE
        assert timers["a"].kind == TimerKind.REMINDER and timers["a"].fire_at == at
        line = s.get(HistoryEntry, line_id)
        assert line is not None and line.data == {"说明": "收到", "n": [1, 2]} and line.at == at


def test_cursor_events_fire_and_errors_are_sqlalchemys(seeded, engine) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        with pytest.raises(exc.IntegrityError), seeded.begin() as s:
            execute(
                s.connection(),
                _LINE,
                {
                    "instance_id": 2**31 - 1,  # no such instance
                    "human_task_id": None,
                    "action": "noted",
                    "actor_person_id": None,
                    "actor_position_id": None,
                    "actor_label": "",
                    "data": None,
                    "at": datetime.now(UTC),
                },
            )
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert any(s.startswith("INSERT INTO history") for s in seen)
    with seeded() as s:  # the session rolled back cleanly; nothing was stored
        assert s.scalars(select(HistoryEntry).where(HistoryEntry.action == "noted")).all() == []


_LINES = Direct(
    select(HistoryEntry.action, HistoryEntry.data)
    .where(HistoryEntry.action.like("noted%"))
    .order_by(HistoryEntry.id)
)
_ADD = Direct(insert(HistoryEntry))
_LOCK = Direct(select(Instance.id).where(Instance.id == bindparam("id")).with_for_update())


def _line(instance_id: int, action: str, **data: Any) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "human_task_id": None,
        "action": action,
        "actor_person_id": None,
        "actor_position_id": None,
        "actor_label": "",
        "data": data or None,
        "at": datetime(2026, 12, 1, tzinfo=UTC),
    }


def _noted(seeded) -> list[str]:  # type: ignore[no-untyped-def]
    with seeded() as s:
        return [r["action"] for r in rows(s.connection(), _LINES, {})]


def test_deferred_writes_run_in_order_before_any_later_statement(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    with seeded.begin() as s:
        conn = s.connection()
        defer(conn, _ADD, _line(item.id, "noted 1"))
        defer_many(conn, _ADD, [_line(item.id, "noted 2"), _line(item.id, "noted 3", k="值")])
        # a direct read, then an ORM query, each sees every write asked for before it
        assert [r["action"] for r in rows(conn, _LINES, {})] == ["noted 1", "noted 2", "noted 3"]
        defer(conn, _ADD, _line(item.id, "noted 4"))
        orm = s.scalars(select(HistoryEntry.action).where(HistoryEntry.action.like("noted%")))
        assert list(orm) == ["noted 1", "noted 2", "noted 3", "noted 4"]
        defer(conn, _ADD, _line(item.id, "noted 5"))  # sent with the commit
        locked, lines = rows_each(conn, (_LOCK, {"id": item.id}), (_LINES, {}))
        assert locked == [{"id": item.id}] and len(lines) == 5
        defer(conn, _ADD, _line(item.id, "noted 6"))
    assert _noted(seeded) == [f"noted {n}" for n in range(1, 7)]
    with seeded() as s:
        assert rows(s.connection(), _LINES, {})[2]["data"] == {"k": "值"}


def test_deferred_writes_are_dropped_with_a_rollback(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    s = seeded()
    defer(s.connection(), _ADD, _line(item.id, "noted never"))
    s.rollback()
    s.close()
    with seeded.begin() as s:  # the connection, back from the pool, carries nothing over
        defer(s.connection(), _ADD, _line(item.id, "noted once"))
    assert _noted(seeded) == ["noted once"]


def test_a_failed_check_or_write_rolls_everything_back(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())

    def exactly_one(rowcount: int) -> None:
        if rowcount != 1:
            raise Conflict(f"{rowcount} rows")

    with pytest.raises(Conflict, match="0 rows"), seeded.begin() as s:
        defer(s.connection(), _ADD, _line(item.id, "noted a"))
        defer(s.connection(), _DONE, {}, exactly_one)  # no such timer: checked at the commit
    with pytest.raises(exc.IntegrityError), seeded.begin() as s:
        defer(s.connection(), _ADD, _line(item.id, "noted b"))
        defer(s.connection(), _ADD, _line(2**31 - 1, "noted c"))  # no such instance
    assert _noted(seeded) == []


# --- PostgreSQL: BEGIN and COMMIT are sent with the statements, statements are prepared ------


def _postgresql(engine) -> None:  # type: ignore[no-untyped-def]
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's transactions and prepared statements")


def _driver(s) -> Any:  # type: ignore[no-untyped-def]
    return s.connection().connection.dbapi_connection


def test_a_session_that_only_reads_opens_no_transaction(seeded, engine) -> None:  # type: ignore[no-untyped-def]
    _postgresql(engine)
    from psycopg.pq import TransactionStatus

    with seeded() as s:
        assert len(rows(s.connection(), _LINES, {})) == 0
        raw = _driver(s)
        assert raw.info.transaction_status == TransactionStatus.IDLE
        # the first statement that locks begins the transaction, in the same round trip
        rows_each(s.connection(), (_LOCK, {"id": 1}), (_LINES, {}))
        assert raw.info.transaction_status == TransactionStatus.INTRANS
    assert raw.info.transaction_status == TransactionStatus.IDLE  # and ends with the session


def test_the_isolation_level_asked_for_is_the_transactions(seeded, engine) -> None:  # type: ignore[no-untyped-def]
    _postgresql(engine)
    serializable = engine.connect().execution_options(isolation_level="SERIALIZABLE")
    with serializable as conn, conn.begin():
        rows_each(conn, (_LOCK, {"id": 1}))
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "serializable"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM history")  # refused inside a transaction block
    with engine.connect() as conn, conn.begin():
        rows_each(conn, (_LOCK, {"id": 1}))
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"


def test_statements_are_prepared_again_after_a_rollback_drops_them(seeded, engine, clock) -> None:  # type: ignore[no-untyped-def]
    """psycopg answers a ROLLBACK with DEALLOCATE ALL once it has prepared statements of its
    own: the pipeline's prepared statements go too and must be prepared afresh."""
    _postgresql(engine)
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    for attempt in range(8):  # psycopg prepares a statement the fifth time it runs it
        s = seeded()
        conn = s.connection()
        defer(conn, _ADD, _line(item.id, f"noted {attempt}"))
        assert len(rows_each(conn, (_LOCK, {"id": item.id}), (_LINES, {}))[1]) == 1
        s.scalars(select(HistoryEntry.id).where(HistoryEntry.action == "x")).all()
        s.rollback()  # a write: ROLLBACK, then DEALLOCATE ALL
        s.close()
    assert _noted(seeded) == []
    with seeded.begin() as s:
        defer(s.connection(), _ADD, _line(item.id, "noted kept"))
    assert _noted(seeded) == ["noted kept"]


def test_an_error_mid_pipeline_stops_it_and_the_next_one_runs(seeded, engine, clock) -> None:  # type: ignore[no-untyped-def]
    _postgresql(engine)
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    with pytest.raises(exc.IntegrityError, match="foreign key"), seeded.begin() as s:
        defer(s.connection(), _ADD, _line(item.id, "noted a"))
        defer(s.connection(), _ADD, _line(2**31 - 1, "noted b"))  # no such instance
        defer(s.connection(), _ADD, _line(item.id, "noted c"))
        rows(s.connection(), _LINES, {})
    with seeded.begin() as s:
        defer(s.connection(), _ADD, _line(item.id, "noted d"))
        assert [r["action"] for r in rows(s.connection(), _LINES, {})] == ["noted d"]
    assert _noted(seeded) == ["noted d"]


_TOUCH = Direct(
    update(Instance)
    .where(Instance.id == bindparam("instance_id"))
    .values(business_key=Instance.business_key)
)


def test_a_deferred_write_reaches_the_server_before_anything_is_read(seeded, engine, clock) -> None:  # type: ignore[no-untyped-def]
    """A deferred write goes out at once: the server runs it (here: takes the row lock of an
    UPDATE) while the transaction's own process goes on, though nothing was read back yet."""
    _postgresql(engine)
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
    locked_elsewhere = "SELECT id FROM instance WHERE id = %(id)s FOR UPDATE NOWAIT"
    with seeded.begin() as s:
        defer(s.connection(), _TOUCH, {"instance_id": item.id})
        with engine.connect() as other:
            deadline = time.monotonic() + 10
            while True:
                try:
                    with other.begin():
                        other.exec_driver_sql(locked_elsewhere, {"id": item.id})
                except exc.OperationalError as error:
                    assert getattr(error.orig, "sqlstate", None) == "55P03"  # lock not available
                    break
                assert time.monotonic() < deadline, "the deferred UPDATE never reached the server"
                time.sleep(0.01)
    with engine.connect() as other, other.begin():  # committed: the lock is gone
        other.exec_driver_sql(locked_elsewhere, {"id": item.id})
