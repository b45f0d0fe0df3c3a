"""The few statements every step runs, sent to the driver's cursor directly.

Connection.execute spends ~100 µs of CPU on each statement before and after the driver
(execution context, cache lookup, result object): for the one-row writes of a step, more than
the driver and the server together. A Direct statement is compiled once per dialect and set of
parameter names; its values go through the bind processors SQLAlchemy itself would apply
(enums, UTC datetimes, JSON); the engine's cursor events still fire (engine.db's read-only
tracker, statement counters, tests); a driver error comes out as SQLAlchemy's DBAPIError, with
a lost connection invalidated, as it would through Connection.execute. `execute` hands back
the driver's cursor (rowcounts, ids); `rows` converts each value with SQLAlchemy's own result
processors (enums, UTC datetimes, JSON, booleans on SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable

from .db import UNAVAILABLE_STATES


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: tuple[str, ...] | None  # names in placeholder order, for qmark drivers
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    construct: Callable[[dict[str, Any]], dict[str, Any]]
    # A SELECT's columns: (name, SQLAlchemy's conversion of the driver's value, or None).
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]


class Direct:
    """A prebuilt statement, compiled for each dialect and set of parameter names it meets."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, frozenset[str]], _Compiled] = {}

    def compiled(self, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
        found = self._compiled.get((dialect.name, keys))
        if found is None:
            compiled = self.statement.compile(dialect=dialect, column_keys=sorted(keys))  # type: ignore[attr-defined]
            processors = tuple(  # by the name each value has in the statement
                (name, processor)
                for bind, name in compiled.bind_names.items()
                if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))
            )
            positional = tuple(compiled.positiontup) if compiled.positional else None
            selected = getattr(self.statement, "selected_columns", ())
            columns = tuple(
                (c.key, c.type.dialect_impl(dialect).result_processor(dialect, None))
                for c in selected
            )
            if len({name for name, _ in columns}) != len(columns):
                raise ValueError(f"label the columns of the same name: {compiled.string}")
            found = _Compiled(
                compiled.string, positional, processors, compiled.construct_params, columns
            )
            self._compiled[(dialect.name, keys)] = found
        return found


def execute(conn: Connection, direct: Direct, params: dict[str, Any]) -> Any:
    """Run one statement; returns the driver's cursor (rowcount, RETURNING rows)."""
    return _run(conn, direct, [params], many=False)[0]


def rows(conn: Connection, direct: Direct, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a SELECT; its rows by column name, each value converted as SQLAlchemy would
    (enums, UTC datetimes, JSON, booleans on SQLite)."""
    cursor, compiled = _run(conn, direct, [params], many=False)
    return [
        {
            name: convert(value) if convert else value
            for (name, convert), value in zip(compiled.columns, row, strict=True)
        }
        for row in cursor.fetchall()
    ]


def execute_many(conn: Connection, direct: Direct, rows: Sequence[dict[str, Any]]) -> None:
    """Run one statement for each of `rows` (all with the same names)."""
    if rows:
        _run(conn, direct, rows, many=True)


def _run(
    conn: Connection, direct: Direct, rows: Sequence[dict[str, Any]], many: bool
) -> tuple[Any, _Compiled]:
    """The driver's cursor after the statement ran, and the statement as compiled for it."""
    dialect = conn.dialect
    compiled = direct.compiled(dialect, frozenset(rows[0]))
    args = [_bind(compiled, row) for row in rows]
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    sent: Any = args if many else args[0]
    conn.dispatch.before_cursor_execute(conn, cursor, compiled.sql, sent, None, many)
    try:
        if many:
            cursor.executemany(compiled.sql, sent)
        else:
            cursor.execute(compiled.sql, sent)
    except dialect.loaded_dbapi.Error as error:
        _raise(conn, compiled.sql, sent, error, cursor)
    conn.dispatch.after_cursor_execute(conn, cursor, compiled.sql, sent, None, many)
    return cursor, compiled


def _bind(compiled: _Compiled, row: dict[str, Any]) -> Any:
    values = compiled.construct(row)  # literal values in the statement's WHERE included
    for name, processor in compiled.processors:
        values[name] = processor(values[name])
    if compiled.positional is not None:
        return [values[name] for name in compiled.positional]
    return values


def _raise(conn: Connection, sql: str, args: Any, error: Any, cursor: Any) -> NoReturn:
    dialect = conn.dialect
    raw = conn.connection.dbapi_connection
    state = str(getattr(error, "sqlstate", None) or "")
    gone = dialect.is_disconnect(error, raw, cursor) or state.startswith(UNAVAILABLE_STATES)
    wrapped = exc.DBAPIError.instance(
        sql,
        args,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=gone,
        dialect=dialect,
    )
    if gone:
        conn.invalidate(error)
    raise wrapped from error
