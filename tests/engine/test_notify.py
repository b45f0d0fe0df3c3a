"""A transaction's notices are written as it commits, in the order they arose, to whoever holds
the seat then; a transaction that rolls back leaves none."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from engine import pgpipe
from engine.directory import find_unit, hand_over, position_of
from engine.models import Notification, Outbox, Person, Position, PositionKind
from engine.notify import notify
from engine.routing import hand_out
from tests.helpers import act, open_steps


def _seat(s, clock, *names: str):  # type: ignore[no-untyped-def]
    unit = find_unit(s, "县农业农村局", "weixi")
    seat = position_of(s, unit, "liaison")
    people = [Person(name=n, email=f"{n}@example.org") for n in names]
    s.add_all(people)
    s.flush()
    hand_over(s, seat, people[0], clock())
    return seat, people


def _notices(seeded) -> list[tuple[int, str, str]]:  # type: ignore[no-untyped-def]
    with seeded() as s:
        rows = s.execute(
            select(Notification.person_id, Notification.event, Notification.link).order_by(
                Notification.id
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_notices_are_written_at_commit_in_order_to_the_seat_holder_then(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        seat, (_first, second) = _seat(s, clock, "甲", "乙")
    with seeded.begin() as s:
        notify(s, [], "task_assigned", lambda: {"step": "签收"}, "/a", clock(), seat=seat.id)
        notify(s, [second.id], "urged", {"note": "请尽快"}, "/b", clock())
        assert s.scalars(select(Notification)).all() == []  # not yet: at the commit
        # the seat changes hands before the commit: its new holder is told
        hand_over(s, s.merge(seat), s.merge(second), clock())
    assert _notices(seeded) == [(second.id, "task_assigned", "/a"), (second.id, "urged", "/b")]
    with seeded() as s:
        outbox = s.scalars(select(Outbox.address)).all()
        assert outbox == ["乙@example.org", "乙@example.org"]


def test_a_rolled_back_transaction_tells_nobody(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        seat, (first,) = _seat(s, clock, "甲")
    with pytest.raises(RuntimeError), seeded.begin() as s:
        notify(s, [first.id], "urged", {}, "/x", clock())
        raise RuntimeError("the step failed")
    with seeded.begin() as s:  # the same pooled session machinery: nothing carried over
        notify(s, [], "task_assigned", {}, "/y", clock(), seat=seat.id)
    assert _notices(seeded) == [(first.id, "task_assigned", "/y")]
    with pytest.raises(ValueError, match="unknown notification event"), seeded() as s:
        notify(s, [first.id], "no_such_event", {}, "/z", clock())


def test_a_step_starting_branches_reads_their_holders_once(seeded, clock, engine) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [19], clock())  # 1 lead, 2 supporting units
    while True:  # acknowledgements, then the plan: it starts the contribution branches
        with seeded() as s:
            step = open_steps(s, item.id)[0]
        if step.form == "plan":
            break
        act(seeded, step, clock)
    with seeded.begin() as s:  # every liaison seat held, so that each new step tells someone
        for seat in s.scalars(select(Position).where(Position.kind == PositionKind.LIAISON)):
            person = Person(name=f"联络员{seat.id}")
            s.add(person)
            s.flush()
            hand_over(s, seat, person, clock())
    holder_reads: list[str] = []
    round_trips: list[int] = []  # PostgreSQL: holder reads per pipeline that had any
    run = pgpipe.run

    def count(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM holding" in statement:
            holder_reads.append(statement)

    def pipeline(raw, statements):  # type: ignore[no-untyped-def]
        reads = sum("FROM holding" in sql for sql, _args, _control in statements)
        if reads:
            round_trips.append(reads)
        return run(raw, statements)

    before = len(_notices(seeded))
    event.listen(engine, "before_cursor_execute", count)
    pgpipe.run = pipeline
    try:
        act(seeded, step, clock)
    finally:
        pgpipe.run = run
        event.remove(engine, "before_cursor_execute", count)
    with seeded() as s:
        new_steps = [t for t in open_steps(s, item.id) if t.position_id is not None]
    assert len(new_steps) >= 2
    assert len(holder_reads) == len({t.position_id for t in new_steps})  # each seat once
    if engine.dialect.name == "postgresql":
        assert round_trips == [len(holder_reads)]  # all of them in one round trip
    told = _notices(seeded)[before:]
    assert sorted(link for _, _, link in told) == sorted(f"/tasks/{t.id}" for t in new_steps)
