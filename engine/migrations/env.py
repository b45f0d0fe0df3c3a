"""Alembic environment: duban passes its own connection (see engine.db.upgrade)."""

from alembic import context
from sqlalchemy import TypeDecorator, create_engine

from engine.models import Base

config = context.config
connection = config.attributes.get("connection")


def _render_item(type_, obj, autogen_context):  # type: ignore[no-untyped-def]
    # Migrations must not import duban's models: write a TypeDecorator as the type it stores.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def _run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        render_as_batch=conn.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # `alembic` command line, for writing new revisions
    url = config.get_main_option("sqlalchemy.url") or "sqlite:///var/alembic-dev.sqlite3"
    with create_engine(url).connect() as conn:
        _run(conn)
        conn.commit()
