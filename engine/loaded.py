"""ORM objects for rows written or read with Core statements (engine.direct), kept as if the
ORM had loaded them: they never turn dirty and are never written twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.instrumentation import manager_of_class


def set_loaded(obj: Any, **values: Any) -> None:
    """Keep a loaded object in step with what a Core statement wrote, without making it dirty."""
    for name, value in values.items():
        set_committed_value(obj, name, value)


def attach(session: Session, obj: Any) -> None:
    """Make an object whose row a Core INSERT wrote (its id set) a persistent one of the session."""
    make_transient_to_detached(obj)
    session.add(obj)


def loaded(session: Session, cls: type[Any], row: dict[str, Any]) -> Any:
    """A persistent object of the session for a row the database holds (read, or just written
    with Core), built as SQLAlchemy's own loading builds one: the values go straight into its
    dict, without the attribute events of a constructor (which cost three times the rest)."""
    obj = manager_of_class(cls).new_instance()
    obj.__dict__.update(row)
    attach(session, obj)
    return obj


def as_loaded(session: Session, cls: type[Any], row: dict[str, Any]) -> Any:
    """The session's object for a row read with Core, its attributes set to the row (as a
    populate-existing load would), or a new persistent one."""
    obj = session.identity_map.get(session.identity_key(cls, row["id"]))
    if obj is None:
        return loaded(session, cls, row)
    set_loaded(obj, **row)
    return obj
