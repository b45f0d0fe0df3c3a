"""Several statements in one round trip to PostgreSQL, sent through libpq's pipeline mode
directly (engine.direct's pipelines).

psycopg's own pipeline flushes the socket and runs its result bookkeeping after every
statement: about 90 µs of CPU per statement here, more than the server spends executing it.
This sends everything, one Sync, and reads the results back: the same protocol messages, a
tenth of the CPU. Parameters are adapted and rows loaded by psycopg's own adapters, so values
go and come back exactly as through a psycopg cursor.

Each statement is prepared on the server (by name, per connection) the first time this
connection sends it, so the server parses and plans it once. psycopg forgets its own prepared
statements with DEALLOCATE ALL at every ROLLBACK and after DDL, which drops these too:
engine.db calls `forget_prepared` then."""

from __future__ import annotations

import select
from collections.abc import Sequence
from contextlib import suppress
from typing import Any
from weakref import WeakKeyDictionary

from psycopg import Error, OperationalError
from psycopg import errors as pg_errors
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer
from psycopg.pq import ConnStatus, ExecStatus

_MAX_PREPARED = 256  # per connection; the statements duban sends this way are a fixed few dozen
_PREFIX = b"_duban_"  # psycopg names its own _pg3_N


class Result:
    """What a cursor would hold after one statement: its rows and rowcount."""

    __slots__ = ("connection", "rowcount", "rows")

    def __init__(self, connection: Any) -> None:
        self.connection = connection  # as a cursor's: the driver connection
        self.rows: list[tuple[Any, ...]] = []
        self.rowcount = -1

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class _State:
    """Per driver connection: psycopg's adapters for it, and what it has prepared."""

    def __init__(self, raw: Any) -> None:
        self.transformer = Transformer(raw)
        self.encoding = raw.info.encoding
        self.prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.serial = 0
        # Sent ahead (`send`) and not yet read back: what to expect, and the results to fill.
        self.expected: list[tuple[int, tuple[bytes, tuple[int, ...]] | None]] = []
        self.results: list[Result] = []


def _state(raw: Any) -> _State:
    state = _STATES.get(raw)
    if state is None:
        state = _STATES[raw] = _State(raw)
    return state


_STATES: WeakKeyDictionary[Any, _State] = WeakKeyDictionary()


def forget_prepared(raw: Any) -> None:
    """The server has dropped this connection's prepared statements (DEALLOCATE ALL)."""
    state = _STATES.get(raw)
    if state is not None:
        state.prepared.clear()


# A statement to send: (SQL with %(name)s / %s placeholders, its parameter sets, control).
# A control statement (BEGIN, COMMIT) has no parameters and is never prepared.
Statement = tuple[str, Sequence[Any], bool]


def send(raw: Any, statements: Sequence[Statement]) -> None:
    """Send `statements` now, without waiting for them: the server runs them while the caller
    goes on, and their results are read by the next `run` (or thrown away by `drain`)."""
    state = _state(raw)
    pgconn = raw.pgconn
    try:
        if not state.results:
            pgconn.enter_pipeline_mode()
        _queue(raw, state, statements)
        pgconn.flush()  # what the socket cannot take now goes out with the next call
    except BaseException:
        _abandon(raw, state)
        raise


def run(raw: Any, statements: Sequence[Statement]) -> list[Result]:
    """Send `statements` (each with one or more parameter sets) in one pipeline and return
    one Result per statement once all have run, preceded by those sent ahead with `send`.
    The first error is raised as psycopg raises it (the statements after it did not run); a
    lost connection as OperationalError."""
    send(raw, statements)
    state, pgconn = _STATES[raw], raw.pgconn
    try:
        pgconn.pipeline_sync()
        _flush(pgconn)
        results = state.results
        error = _collect(pgconn, state.transformer, state, state.expected, results)
    except BaseException:
        _abandon(raw, state)
        raise
    state.expected, state.results = [], []
    pgconn.exit_pipeline_mode()
    if error is not None:
        raise error
    return results


def drain(raw: Any) -> None:
    """Read back and forget whatever was sent ahead (the transaction is being rolled back)."""
    state = _STATES.get(raw)
    if state is None or not state.results:
        return
    with suppress(Error):  # the transaction is over either way
        run(raw, [])


def _queue(raw: Any, state: _State, statements: Sequence[Statement]) -> None:
    pgconn, tx = raw.pgconn, state.transformer
    expected = state.expected  # what comes back, in order: (statement index or -1, Parse key)
    for sql, arg_sets, control in statements:
        index = len(state.results)
        state.results.append(Result(raw))
        if control:
            pgconn.send_query_params(sql.encode(), None)
            expected.append((index, None))
            continue
        query = PostgresQuery(tx)
        for n, args in enumerate(arg_sets):
            if n == 0:
                query.convert(sql, args)
            else:
                query.dump(args)
            key = (query.query, tuple(query.types))
            name = state.prepared.get(key)
            if name is None and len(state.prepared) < _MAX_PREPARED:
                state.serial += 1
                name = state.prepared[key] = _PREFIX + str(state.serial).encode()
                pgconn.send_prepare(name, query.query, param_types=query.types)
                expected.append((-1, key))
            if name is not None:
                pgconn.send_query_prepared(name, query.params, param_formats=query.formats)
            else:
                pgconn.send_query_params(
                    query.query,
                    query.params,
                    param_types=query.types,
                    param_formats=query.formats,
                )
            expected.append((index, None))


def _collect(
    pgconn: Any,
    tx: Any,
    state: _State,
    expected: list[tuple[int, tuple[bytes, tuple[int, ...]] | None]],
    results: list[Result],
) -> Exception | None:
    """Read every expected result and the Sync; the first error, if any."""
    error: Exception | None = None
    for index, key in expected:
        outcome = _next_result(pgconn)
        if outcome is None:
            raise OperationalError("a statement's result is missing from the pipeline")
        status = outcome.status
        if status == ExecStatus.FATAL_ERROR:
            if error is None:
                error = pg_errors.error_from_result(outcome, encoding=state.encoding)
        elif status == ExecStatus.TUPLES_OK and index >= 0:
            tx.set_pgresult(outcome)
            found = results[index]
            found.rows.extend(tx.load_rows(0, outcome.ntuples, tuple))
            found.rowcount = max(found.rowcount, 0) + outcome.ntuples
        elif status == ExecStatus.COMMAND_OK and index >= 0:
            found = results[index]
            tuples = outcome.command_tuples
            found.rowcount = max(found.rowcount, 0) + (tuples if tuples is not None else 0)
        if key is not None and status != ExecStatus.COMMAND_OK:
            state.prepared.pop(key, None)  # the Parse failed or never ran
        if _next_result(pgconn) is not None:
            raise OperationalError("unexpected extra result in a pipeline")
    end = _next_result(pgconn)
    if end is None or end.status != ExecStatus.PIPELINE_SYNC:
        raise OperationalError("the pipeline's Sync did not come back")
    if isinstance(error, pg_errors.InvalidSqlStatementName):
        state.prepared.clear()  # dropped behind our back: prepare afresh next time
    return error


def _next_result(pgconn: Any) -> Any:
    """The next result (None ends each statement's), waiting for the server as needed: the
    socket is read only when what was read so far holds no complete result."""
    while pgconn.is_busy():
        _wait(pgconn.socket, select.POLLIN)
        pgconn.consume_input()
    return pgconn.get_result()


def _flush(pgconn: Any) -> None:
    # While a long pipeline is still going out, results may come back: read them too, or
    # the server could stall writing them while we wait to write.
    while pgconn.flush():
        if _wait(pgconn.socket, select.POLLIN | select.POLLOUT) & select.POLLIN:
            pgconn.consume_input()


def _wait(fd: int, events: int) -> int:
    poller = select.poll()
    poller.register(fd, events)
    return sum(ready for _fd, ready in poller.poll())


def _abandon(raw: Any, state: _State) -> None:
    """A failure half-way through (the connection lost, an interrupt): nothing sent can be
    trusted, so the connection is closed and the pool replaces it."""
    state.prepared.clear()
    state.expected, state.results = [], []
    if raw.pgconn.status != ConnStatus.BAD:
        raw.close()
