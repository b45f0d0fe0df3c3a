"""Writes sent to the driver directly (engine.direct) store what SQLAlchemy would have stored,
fire the engine's cursor events, and fail as SQLAlchemy's own errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, exc, insert, select, update

from engine.direct import Direct, execute, execute_many
from engine.models import HistoryEntry, Timer, TimerKind, TimerState
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
