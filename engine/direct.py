"""The few statements every step runs, sent to the driver's cursor directly.

Connection.execute spends ~100 µs of CPU on each statement before and after the driver
(execution context, cache lookup, result object): for the one-row writes of a step, more than
the driver and the server together. A Direct statement is compiled once per dialect and set of
parameter names; its values go through the bind processors SQLAlchemy itself would apply
(enums, UTC datetimes, JSON); the engine's cursor events still fire (engine.db's read-only
tracker, statement counters, tests); a driver error comes out as SQLAlchemy's DBAPIError, with
a lost connection invalidated, as it would through Connection.execute. `execute` hands back
the driver's cursor (rowcounts, ids; on PostgreSQL a result that holds the same); `rows`
converts each value with SQLAlchemy's own result processors (enums, UTC datetimes, JSON,
booleans on SQLite). On PostgreSQL every direct statement goes through engine.pgpipe (libpq's
pipeline mode, statements prepared once per connection), not a psycopg cursor.

On PostgreSQL a round trip costs about as much as a small statement's execution. Writes whose
outcome the step does not read back (`defer`) wait, per connection, and go out in one
pipeline with the next statement that must answer, or just before COMMIT: statements still run
in the order they were asked for, in the same transaction, so every read sees every write made
before it. On SQLite (in-process, no round trips) nothing waits.

The BEGIN and COMMIT are ours to send on PostgreSQL (engine.db keeps psycopg in autocommit):
psycopg's own, in a pipeline, each wait for a round trip of their own (it syncs after BEGIN to
learn the transaction began, and after COMMIT before the pipeline's closing sync). A BEGIN
waits like a deferred write and goes with the transaction's first statement; the COMMIT goes
with the last writes. A plain SELECT that would open the transaction runs before it instead,
on its own (under READ COMMITTED each statement takes its own snapshot either way): a session
that only reads sends no BEGIN and no COMMIT at all."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn
from weakref import WeakKeyDictionary

from psycopg import IsolationLevel
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import Executable, Select

from . import pgpipe
from .db import UNAVAILABLE_STATES


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positional: tuple[str, ...] | None  # names in placeholder order, for qmark drivers
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    construct: Callable[[dict[str, Any]], dict[str, Any]]
    # A SELECT's columns: (name, SQLAlchemy's conversion of the driver's value, or None).
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    plain_read: bool  # a SELECT that locks nothing


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
            plain = isinstance(self.statement, Select) and self.statement._for_update_arg is None
            found = _Compiled(
                compiled.string, positional, processors, compiled.construct_params, columns, plain
            )
            self._compiled[(dialect.name, keys)] = found
        return found


Check = Callable[[int], None]  # called with a deferred statement's rowcount once it has run


@dataclass(frozen=True)
class _Sent:
    compiled: _Compiled
    args: Any
    many: bool
    check: Check | None = None
    control: bool = False  # BEGIN / COMMIT: never prepared, no cursor events (as SQLAlchemy's)


def _control(sql: str) -> _Sent:
    return _Sent(_Compiled(sql, None, (), lambda _row: {}, (), False), None, False, control=True)


_COMMIT = _control("COMMIT")


@dataclass
class _Waiting:
    conn: Connection  # the Connection that deferred them: its events fire, its errors raise
    statements: list[_Sent] = field(default_factory=list)
    ahead: int = 0  # how many of them are sent already (their results not yet read)

    def only_begin(self) -> bool:
        return len(self.statements) == 1 and self.statements[0].control


# Deferred writes per driver connection (weakly held: a connection thrown away drops its own).
_WAITING: WeakKeyDictionary[Any, _Waiting] = WeakKeyDictionary()
_IDLE = TransactionStatus.IDLE


def _pipelines(dialect: Dialect) -> bool:
    return dialect.driver == "psycopg"


def execute(conn: Connection, direct: Direct, params: dict[str, Any]) -> Any:
    """Run one statement; returns the driver's cursor (rowcount, RETURNING rows)."""
    return _run(conn, direct, [params], many=False)[0]


def defer(
    conn: Connection, direct: Direct, params: dict[str, Any], check: Check | None = None
) -> None:
    """Run a write whose outcome is not read back: on PostgreSQL with the next statement that
    must answer or just before COMMIT, elsewhere now. `check` gets its rowcount then (and may
    raise, which rolls the transaction back)."""
    if not _pipelines(conn.dialect):
        cursor = execute(conn, direct, params)
        if check is not None:
            check(cursor.rowcount)
        return
    compiled = direct.compiled(conn.dialect, frozenset(params))
    _wait(conn, _Sent(compiled, _bind(compiled, params), False, check))


def defer_many(conn: Connection, direct: Direct, rows: Sequence[dict[str, Any]]) -> None:
    """`defer` for one statement run for each of `rows` (all with the same names)."""
    if not rows:
        return
    if not _pipelines(conn.dialect):
        execute_many(conn, direct, rows)
        return
    compiled = direct.compiled(conn.dialect, frozenset(rows[0]))
    _wait(conn, _Sent(compiled, [_bind(compiled, row) for row in rows], True))


def _wait(conn: Connection, sent: _Sent) -> None:
    """Hold a write until something must answer; on PostgreSQL send it at once all the same
    (with the transaction's BEGIN if not sent yet), so the server runs it while this process
    goes on with the step: only its result waits."""
    raw = conn.connection.dbapi_connection
    waiting = _WAITING.pop(raw, None)  # out while the events fire: they would send it
    if waiting is None:
        waiting = _Waiting(conn)
    waiting.statements.append(sent)
    unsent = waiting.statements[waiting.ahead :]
    _before_sending(conn, raw, unsent)
    try:
        pgpipe.send(raw, _driver_statements(unsent))
    except conn.dialect.loaded_dbapi.Error as error:
        _raise(conn, sent.compiled.sql, sent.args, error, None)
    waiting.ahead = len(waiting.statements)
    _WAITING[raw] = waiting


def begin_later(conn: Connection, isolation_level: str | None) -> None:
    """The transaction SQLAlchemy begins on `conn`: its BEGIN waits for the first statement."""
    raw = conn.connection.dbapi_connection
    begin = _BEGIN.get(isolation_level)
    if begin is None:  # built once per level: every transaction sends one
        level = f" ISOLATION LEVEL {isolation_level}" if isolation_level else ""
        begin = _BEGIN[isolation_level] = _control(f"BEGIN{level}")
    _WAITING[raw] = _Waiting(conn, [begin])


_BEGIN: dict[str | None, _Sent] = {}


def send_waiting(dbapi_conn: Any, commit: bool = False) -> bool:
    """Send the driver connection's waiting BEGIN and deferred writes now: engine.db calls
    this before any other statement and at COMMIT. With `commit`, the COMMIT goes in the same
    round trip unless a write's rowcount is still to be checked (a failed check must be able
    to roll back); returns whether the transaction is over (a BEGIN never sent needs no
    COMMIT)."""
    waiting = _WAITING.pop(dbapi_conn, None)
    if waiting is None:
        return False
    if commit and waiting.only_begin():
        return True
    commit = commit and all(sent.check is None for sent in waiting.statements)
    _pipeline(waiting.conn, [*waiting.statements, *([_COMMIT] if commit else [])], waiting.ahead)
    return commit


def drop_waiting(dbapi_conn: Any) -> None:
    """Forget the deferred writes of a transaction being rolled back (those sent ahead are
    read back and thrown away)."""
    waiting = _WAITING.pop(dbapi_conn, None)
    if waiting is not None and waiting.ahead:
        pgpipe.drain(dbapi_conn)


def rows(conn: Connection, direct: Direct, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a SELECT; its rows by column name, each value converted as SQLAlchemy would
    (enums, UTC datetimes, JSON, booleans on SQLite)."""
    cursor, compiled = _run(conn, direct, [params], many=False)
    return _converted(compiled, cursor)


def rows_each(
    conn: Connection, *statements: tuple[Direct, dict[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Run several SELECTs in order (on PostgreSQL in one round trip: each runs after the one
    before it has finished, a lock it waited for included); the rows of each."""
    if not _pipelines(conn.dialect):
        return [rows(conn, direct, params) for direct, params in statements]
    raw = conn.connection.dbapi_connection
    waiting = _WAITING.pop(raw, None)
    before, ahead = (waiting.statements, waiting.ahead) if waiting is not None else ([], 0)
    sent = []
    for direct, params in statements:
        compiled = direct.compiled(conn.dialect, frozenset(params))
        sent.append(_Sent(compiled, _bind(compiled, params), False))
    cursors = _pipeline(conn, [*before, *sent], ahead)[len(before) :]
    return [_converted(s.compiled, c) for s, c in zip(sent, cursors, strict=True)]


def _converted(compiled: _Compiled, cursor: Any) -> list[dict[str, Any]]:
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
    sent: Any = args if many else args[0]
    raw = conn.connection.dbapi_connection
    assert raw is not None
    if not _pipelines(dialect):
        return _on_cursor(conn, raw, compiled, sent, many), compiled
    # On PostgreSQL even a single statement goes through engine.pgpipe: a third of the CPU
    # of psycopg's cursor.execute.
    statement = _Sent(compiled, sent, many)
    waiting = _WAITING.pop(raw, None)
    if waiting is None:
        return _pipeline(conn, [statement])[0], compiled
    if (
        waiting.only_begin()
        and compiled.plain_read
        and raw.isolation_level in _STATEMENT_SNAPSHOTS
        and raw.info.transaction_status == _IDLE
    ):
        # Before the transaction, on its own: it reads what the transaction's first
        # statement would have seen, and takes no lock to keep.
        try:
            return _pipeline(conn, [statement])[0], compiled
        finally:
            _WAITING[raw] = waiting
    return _pipeline(conn, [*waiting.statements, statement], waiting.ahead)[-1], compiled


def _on_cursor(conn: Connection, raw: Any, compiled: _Compiled, args: Any, many: bool) -> Any:
    """Run one statement on a new cursor of `raw`, the engine's cursor events around it."""
    cursor = raw.cursor()
    conn.dispatch.before_cursor_execute(conn, cursor, compiled.sql, args, None, many)
    try:
        if many:
            cursor.executemany(compiled.sql, args)
        else:
            cursor.execute(compiled.sql, args)
    except conn.dialect.loaded_dbapi.Error as error:
        _raise(conn, compiled.sql, args, error, cursor)
    conn.dispatch.after_cursor_execute(conn, cursor, compiled.sql, args, None, many)
    return cursor


# Isolation levels under which every statement of a transaction takes a snapshot of its own
# (None: the server's default, READ COMMITTED unless an administrator changed it).
_STATEMENT_SNAPSHOTS = (None, IsolationLevel.READ_COMMITTED)


def _before_sending(conn: Connection, raw: Any, statements: list[_Sent]) -> None:
    """The engine's cursor events for statements about to go out (BEGIN and COMMIT have none)."""
    for sent in statements:
        if not sent.control:
            conn.dispatch.before_cursor_execute(
                conn, pgpipe.Result(raw), sent.compiled.sql, sent.args, None, sent.many
            )


def _driver_statements(statements: list[_Sent]) -> list[pgpipe.Statement]:
    return [
        (sent.compiled.sql, sent.args if sent.many else [sent.args], sent.control)
        for sent in statements
    ]


def _pipeline(conn: Connection, statements: list[_Sent], ahead: int = 0) -> list[Any]:
    """Send `statements` in one pipeline (one round trip, engine.pgpipe); a cursor-like
    result for each (rows, rowcount), once all have run. The first `ahead` of them were sent
    already (`_wait`)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    _before_sending(conn, raw, statements[ahead:])
    try:
        results = pgpipe.run(raw, _driver_statements(statements[ahead:]))
    except conn.dialect.loaded_dbapi.Error as error:
        # The server stops at the first failure; the error does not say which statement it was.
        sql = ";\n".join(sent.compiled.sql for sent in statements)
        _raise(conn, sql, [sent.args for sent in statements], error, None)
    for sent, result in zip(statements, results, strict=True):
        if sent.control:
            continue
        conn.dispatch.after_cursor_execute(
            conn, result, sent.compiled.sql, sent.args, None, sent.many
        )
        if sent.check is not None:
            sent.check(result.rowcount)
    return results


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
