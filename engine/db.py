"""Database connections and schema migrations.

SQLite is the embedded default; PostgreSQL is the production database. On SQLite every
transaction begins IMMEDIATE, so writers queue up instead of reading state another writer is
about to replace (SQLite has no row locks). On PostgreSQL a connection the server dropped is
replaced before use when it was idle, and reported as a disconnect when it was in use."""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakSet

from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

_IN_TRANSACTION = TransactionStatus.INTRANS
_IDLE = TransactionStatus.IDLE
# Statements after which psycopg drops every prepared statement of the connection.
_DROPS_PREPARED = ("DROP", "ALTER", "DISCARD", "DEALLOCATE", "ROLLBACK")
DEFAULT_URL = "sqlite:///var/duban.sqlite3"
MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)
        _sqlite_setup(engine)
        return engine
    engine = create_engine(url, pool_recycle=1800, **kwargs)
    _postgresql_setup(engine)
    return engine


def _postgresql_setup(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # No pre-ping (a round trip per checkout). A connection the server closed while it sat
        # in the pool (a restart, an administrator) has the server's goodbye waiting in its
        # socket: a poll that does not wait sees it for a system call, and the pool replaces
        # the connection before anyone uses it. Anything unasked-for counts: a needless
        # reconnect is cheap, a failed request is not.
        if dbapi_conn.closed or _has_input(dbapi_conn.fileno()):
            raise exc.DisconnectionError("the server closed this pooled connection")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # A connection lost mid-transaction is already a disconnect (the transaction is gone,
        # the pool lets its connections go). A server that cannot be reached at all is marked
        # the same, so callers test one thing: DBAPIError.connection_invalidated.
        if not context.is_disconnect and _unreachable(context):
            context.is_disconnect = True

    _keep_prepared_statements(engine)
    _send_deferred_writes(engine)
    _begin_ourselves(engine)


def _send_deferred_writes(engine: Engine) -> None:
    """engine.direct holds some writes back to send them with the next statement: any other
    statement on the connection sends them first, so the server runs everything in order."""
    from .direct import send_waiting

    @event.listens_for(engine, "before_cursor_execute")
    def _send_first(_conn: Any, cursor: Any, *_args: Any) -> None:
        send_waiting(cursor.connection)


# Driver connections SQLAlchemy was asked to run in autocommit (isolation_level="AUTOCOMMIT").
_AUTOCOMMIT: WeakSet[Any] = WeakSet()


def _begin_ourselves(engine: Engine) -> None:
    """psycopg runs in autocommit and engine.direct sends BEGIN (with the transaction's
    first statement) and COMMIT (with its last writes): psycopg's own cost a round trip each
    in a pipeline. SQLAlchemy still decides when a transaction begins and ends; an isolation
    level it sets goes into our BEGIN."""
    from .direct import begin_later

    dialect = engine.dialect
    set_level = dialect.set_isolation_level

    def set_isolation_level(dbapi_conn: Any, level: Any) -> None:
        set_level(dbapi_conn, level)  # psycopg's autocommit and isolation_level, per level
        raw = getattr(dbapi_conn, "dbapi_connection", dbapi_conn)
        if raw.autocommit:
            _AUTOCOMMIT.add(raw)
        else:
            _AUTOCOMMIT.discard(raw)
            raw.autocommit = True

    dialect.set_isolation_level = set_isolation_level  # type: ignore[method-assign,assignment]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        if not dbapi_conn.autocommit:  # SQLAlchemy's own setting made on connect is kept
            dbapi_conn.autocommit = True

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        raw: Any = conn.connection.dbapi_connection
        if raw not in _AUTOCOMMIT:
            level = raw.isolation_level
            begin_later(conn, level.name.replace("_", " ") if level is not None else None)


# Connections (psycopg's) whose open transaction has sent something other than a SELECT.
_WROTE: WeakSet[Any] = WeakSet()


def _keep_prepared_statements(engine: Engine) -> None:
    """End read-only transactions with COMMIT, not ROLLBACK. psycopg prepares a statement
    the fifth time a connection runs it, and forgets every prepared statement at a ROLLBACK
    (DEALLOCATE ALL). Sessions that only read end with a rollback: every page view and inbox
    poll would wipe its connection's statements, and a step would parse and plan each of its
    statements anew (about half the server's time per step). For a transaction that only
    read, COMMIT and ROLLBACK end it alike."""

    from .direct import drop_waiting, send_waiting
    from .pgpipe import forget_prepared

    @event.listens_for(engine, "before_cursor_execute")
    def _note_writes(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("SELECT"):  # FOR UPDATE locks are released either way
            _WROTE.add(cursor.connection)
            if statement.lstrip()[:10].upper().startswith(_DROPS_PREPARED):
                forget_prepared(cursor.connection)  # psycopg deallocates all after DDL

    rollback, commit = engine.dialect.do_rollback, engine.dialect.do_commit

    def do_rollback(dbapi_conn: Any) -> None:
        raw = getattr(dbapi_conn, "dbapi_connection", dbapi_conn)  # the pool may pass its own
        drop_waiting(raw)
        status = raw.info.transaction_status
        if raw in _WROTE or status != _IN_TRANSACTION:
            _WROTE.discard(raw)
            rollback(dbapi_conn)
            if status != _IDLE:  # psycopg sent ROLLBACK and DEALLOCATE ALL
                forget_prepared(raw)
        else:  # only read, no error: the same end, statements kept
            commit(dbapi_conn)

    def do_commit(dbapi_conn: Any) -> None:
        raw = getattr(dbapi_conn, "dbapi_connection", dbapi_conn)
        committed = send_waiting(raw, commit=True)  # engine.direct's deferred writes
        _WROTE.discard(raw)
        if not committed:
            commit(dbapi_conn)

    engine.dialect.do_rollback = do_rollback  # type: ignore[method-assign,assignment]
    engine.dialect.do_commit = do_commit  # type: ignore[method-assign,assignment]


def _has_input(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)  # hang-ups and errors are reported regardless
    return bool(poller.poll(0))


# SQLSTATE classes of a server that went away or refuses connections for now.
UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


def _unreachable(context: ExceptionContext) -> bool:
    error = context.original_exception
    if not isinstance(error, context.dialect.loaded_dbapi.OperationalError):
        return False
    if context.connection is None:  # no connection could be made
        return True
    return str(getattr(error, "sqlstate", None) or "").startswith(UNAVAILABLE_STATES)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def scratch_schema(url: str, name: str) -> Iterator[str]:
    """A PostgreSQL schema `name` of one's own for a test run or a benchmark, dropped
    afterwards (a leftover of a killed run with the same name first), so runs never collide.
    Connect to it with `connect_args={"options": f"-csearch_path={name}"}`."""
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {name}"))
        yield name
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {name} CASCADE"))
        admin.dispose()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` with Alembic (the only way duban creates tables)."""
    from alembic import command

    _migrate(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    _migrate(engine, lambda cfg: command.downgrade(cfg, revision))


def _migrate(engine: Engine, run: Callable[[Config], None]) -> None:
    """Run migrations in one transaction. On SQLite a batch migration rebuilds a table (copy,
    drop, rename), and with foreign keys enforced the drop fails as soon as rows of another
    table point at it: enforcement is off while migrating (the pragma is ignored inside a
    transaction, so it is set before BEGIN) and the result is checked before committing."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as conn:
        sqlite = conn.connection.dbapi_connection if engine.dialect.name == "sqlite" else None
        if sqlite is not None:
            sqlite.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                run(cfg)
                if sqlite is not None:
                    _check_foreign_keys(conn)
        finally:
            if sqlite is not None:
                sqlite.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Connection) -> None:
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        table, rowid, parent, _ = broken[0]
        raise RuntimeError(
            f"the migration left {len(broken)} row(s) pointing at nothing, "
            f"e.g. {table} row {rowid} -> {parent}; nothing was changed"
        )
