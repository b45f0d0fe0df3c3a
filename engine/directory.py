"""The directory: jurisdictions, units, positions and who holds them.

Work is assigned to a unit's position; who may act is looked up at request time from the
holdings, so handing a position to a successor moves all its open work without touching it."""

from __future__ import annotations

import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .direct import Direct, rows
from .errors import ImportErrors, NotFound
from .models import (
    AssistanceSetting,
    Holding,
    Jurisdiction,
    JurisdictionSetting,
    Level,
    Person,
    Position,
    PositionKind,
    Unit,
    UnitAlias,
    UnitKind,
)

POSITION_TITLES = {
    PositionKind.LIAISON: "联络员",
    PositionKind.HEAD: "负责人",
    PositionKind.MEMBER: "联席会议成员",
    PositionKind.CONVENER: "召集人",
    PositionKind.DEPUTY_CONVENER: "副召集人",
    PositionKind.OFFICE_DIRECTOR: "联席会议办公室主任",
    PositionKind.OFFICE_STAFF: "联席会议办公室工作人员",
    PositionKind.REVIEWER: "审核人",
}
# Every unit has these seats; the office unit also has the office's own.
UNIT_POSITIONS = (PositionKind.LIAISON, PositionKind.HEAD)
OFFICE_POSITIONS = (PositionKind.OFFICE_DIRECTOR, PositionKind.OFFICE_STAFF, PositionKind.REVIEWER)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ImportErrors(str(path), [f"not valid TOML: {exc}"]) from None
    except OSError as exc:
        raise ImportErrors(str(path), [f"cannot read: {exc.strerror}"]) from None


def _validate_directory(doc: dict[str, Any], known_codes: set[str]) -> list[str]:
    problems: list[str] = []
    codes: set[str] = set()
    for i, j in enumerate(doc.get("jurisdictions", []), 1):
        where = f"jurisdictions[{i}] ({j.get('code', '?')})"
        for key in ("code", "name", "level"):
            if not j.get(key):
                problems.append(f"{where}: '{key}' is missing")
        if j.get("level") and j["level"] not in {lv.value for lv in Level}:
            problems.append(f"{where}: unknown level '{j['level']}'")
        if j.get("parent") and j["parent"] not in codes | known_codes:
            problems.append(f"{where}: parent '{j['parent']}' is not defined before it")
        codes.add(j.get("code", ""))
    all_codes = codes | known_codes
    names: dict[tuple[str, str], str] = {}
    for i, u in enumerate(doc.get("units", []), 1):
        where = f"units[{i}] ({u.get('name', '?')})"
        if not u.get("name"):
            problems.append(f"{where}: 'name' is missing")
        if u.get("jurisdiction") not in all_codes:
            problems.append(f"{where}: unknown jurisdiction '{u.get('jurisdiction')}'")
        if u.get("kind") not in {k.value for k in UnitKind}:
            problems.append(f"{where}: unknown kind '{u.get('kind')}'")
        for name in [u.get("name", ""), *u.get("aliases", [])]:
            slot = (u.get("jurisdiction", ""), name)
            if slot in names and names[slot] != u.get("name"):
                problems.append(f"{where}: name '{name}' is already used by {names[slot]}")
            names[slot] = u.get("name", "")
    unit_names = {name for (_, name) in names}
    for i, p in enumerate(doc.get("people", []), 1):
        where = f"people[{i}] ({p.get('name', '?')})"
        if p.get("unit") not in unit_names:
            problems.append(f"{where}: unknown unit '{p.get('unit')}'")
        if p.get("position") not in {k.value for k in PositionKind}:
            problems.append(f"{where}: unknown position '{p.get('position')}'")
    for i, o in enumerate(doc.get("offices", []), 1):
        if (o.get("jurisdiction", ""), o.get("unit", "")) not in names:
            problems.append(
                f"offices[{i}]: unknown unit '{o.get('unit')}' in '{o.get('jurisdiction')}'"
            )
    for i, row in enumerate(doc.get("settings", []), 1):
        where = f"settings[{i}] ({row.get('jurisdiction', '?')})"
        if row.get("jurisdiction") not in all_codes:
            problems.append(f"{where}: unknown jurisdiction '{row.get('jurisdiction')}'")
        for key, value in row.items():
            if key == "jurisdiction":
                continue
            if key.startswith("escalation.") and key.count(".") == 2:
                rule = "escalation." + key.rsplit(".", 1)[1]
                reason = SETTING_CHECKS[rule](value) if rule in SETTING_CHECKS else "is unknown"
                if reason is not None:
                    problems.append(f"{where}: '{key}' {reason}")
            elif key not in SETTING_CHECKS:
                problems.append(f"{where}: unknown setting '{key}'")
            elif (reason := SETTING_CHECKS[key](value)) is not None:
                problems.append(f"{where}: '{key}' {reason}")
    for i, ind in enumerate(doc.get("indicators", []), 1):
        where = f"indicators[{i}] ({ind.get('code', '?')})"
        for key in ("code", "name", "jurisdiction", "unit"):
            if not ind.get(key):
                problems.append(f"{where}: '{key}' is missing")
        if (ind.get("jurisdiction", ""), ind.get("unit", "")) not in names:
            problems.append(f"{where}: unknown unit '{ind.get('unit', '')}'")
        if ind.get("direction", "at_least") not in ("at_least", "at_most"):
            problems.append(f"{where}: 'direction' must be at_least or at_most")
        targets = ind.get("targets", {})
        if not isinstance(targets, dict) or not all(
            str(y).isdigit() and isinstance(v, int | float) and not isinstance(v, bool)
            for y, v in targets.items()
        ):
            problems.append(f"{where}: 'targets' must map years to numbers, e.g. {{2025 = 656}}")
    for i, a in enumerate(doc.get("assistance", []), 1):
        where = f"assistance[{i}] ({a.get('jurisdiction', '?')})"
        if a.get("jurisdiction") not in all_codes:
            problems.append(f"{where}: unknown jurisdiction '{a.get('jurisdiction')}'")
        for role in ASSISTANCE_ROLES:
            if (a.get("jurisdiction", ""), a.get(role, "")) not in names:
                problems.append(f"{where}: '{role}' names unknown unit '{a.get(role, '')}'")
        if not isinstance(a.get("hardship_relief", False), bool):
            problems.append(f"{where}: 'hardship_relief' must be true or false")
    return problems


def _month_day(value: Any) -> str | None:
    try:
        month, day = (int(x) for x in str(value).split("-"))
        date(2024, month, day)  # a leap year admits every real MM-DD
    except ValueError:
        return f"must be a day of the year as MM-DD, not '{value}'"
    return None


# Settings a jurisdiction may set in its directory file, with their checks (value → reason).
def _days(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 366:
        return f"must be a whole number of days from 0 to 366, not '{value}'"
    return None


def _number(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1000:
        return f"must be a number from 0 to 1000, not '{value}'"
    return None


SETTING_CHECKS: dict[str, Any] = {
    "yearly_meeting_by": _month_day,  # the yearly comprehensive joint meeting is due by then
    "report_collection_by": _month_day,  # townships / counties report the year's work by then
    "report_collection_lead_days": _days,  # the collection starts this many days before
    # Due-date timers (engine.timing); `escalation.<process>.<rule>` overrides per process.
    "escalation.reminder_days": _days,
    "escalation.urge_every_days": _days,
    "escalation.grace_days": _days,
    # The yearly timeliness score (engine.stats.ScoreFormula).
    "score.base": _number,
    "score.per_overdue_day": _number,
    "score.per_send_back": _number,
}


def _load_settings(session: Session, doc: dict[str, Any], by_code: dict[str, Any]) -> int:
    """The file's settings; a setting already stored (changed by the office) is kept."""
    created = 0
    for row in doc.get("settings", []):
        jur = by_code[row["jurisdiction"]]
        for key, value in row.items():
            if key == "jurisdiction":
                continue
            exists = session.scalar(
                select(JurisdictionSetting.id).where(
                    JurisdictionSetting.jurisdiction_id == jur.id, JurisdictionSetting.key == key
                )
            )
            if exists is None:
                session.add(JurisdictionSetting(jurisdiction_id=jur.id, key=key, value=str(value)))
                created += 1
    return created


# Who handles special-family medical assistance, by the directory's keys (engine.assistance).
ASSISTANCE_ROLES = (
    "health",
    "civil_affairs",
    "rural_revitalisation",
    "medical_insurance",
    "reviewer",
)


def _load_assistance(session: Session, doc: dict[str, Any], by_code: dict[str, Any]) -> int:
    """Settings per jurisdiction; a jurisdiction that already has them keeps its own."""
    created = 0
    for a in doc.get("assistance", []):
        jur = by_code[a["jurisdiction"]]
        if session.scalar(
            select(AssistanceSetting.id).where(AssistanceSetting.jurisdiction_id == jur.id)
        ):
            continue
        unit = {role: find_unit(session, a[role], jur.code) for role in ASSISTANCE_ROLES}
        for role in ASSISTANCE_ROLES:
            ensure_position(session, unit[role], PositionKind.LIAISON)
        ensure_position(session, unit["reviewer"], PositionKind.REVIEWER)
        session.add(
            AssistanceSetting(
                jurisdiction_id=jur.id,
                health_unit_id=unit["health"].id,
                civil_affairs_unit_id=unit["civil_affairs"].id,
                rural_unit_id=unit["rural_revitalisation"].id,
                insurance_unit_id=unit["medical_insurance"].id,
                reviewer_unit_id=unit["reviewer"].id,
                hardship_relief=bool(a.get("hardship_relief", False)),
            )
        )
        created += 1
    return created


def load_directory(session: Session, path: Path, now: datetime) -> dict[str, int]:
    """Create what the file describes and is not there yet. Validates the whole file first;
    loading the same file again changes nothing (and never undoes a hand-over)."""
    doc = read_toml(path)
    known = set(session.scalars(select(Jurisdiction.code)))
    problems = _validate_directory(doc, known)
    if problems:
        raise ImportErrors(str(path), problems)
    counts = {"jurisdictions": 0, "units": 0, "positions": 0, "people": 0}
    by_code = {j.code: j for j in session.scalars(select(Jurisdiction))}
    for j in doc.get("jurisdictions", []):
        if j["code"] in by_code:
            continue
        parent = by_code.get(j.get("parent", ""))
        row = Jurisdiction(
            code=j["code"],
            name=j["name"],
            short_name=j.get("short_name", ""),
            level=Level(j["level"]),
            parent=parent,
        )
        session.add(row)
        by_code[j["code"]] = row
        counts["jurisdictions"] += 1
    session.flush()
    units: dict[str, Unit] = {}
    for u in doc.get("units", []):
        jur = by_code[u["jurisdiction"]]
        unit = session.scalar(
            select(Unit).where(Unit.jurisdiction_id == jur.id, Unit.name == u["name"])
        )
        if unit is None:
            unit = Unit(
                jurisdiction_id=jur.id,
                name=u["name"],
                kind=UnitKind(u["kind"]),
                member=bool(u.get("member", False)),
            )
            session.add(unit)
            session.flush()
            counts["units"] += 1
        have = {a.alias for a in unit.aliases}
        for alias in u.get("aliases", []):
            if alias not in have:
                unit.aliases.append(UnitAlias(alias=alias, jurisdiction_id=jur.id))
        for kind in UNIT_POSITIONS:
            counts["positions"] += ensure_position(session, unit, kind)[1]
        units[u["name"]] = unit
    for o in doc.get("offices", []):
        office = units[o["unit"]]
        by_code[o["jurisdiction"]].office_unit_id = office.id
        for kind in OFFICE_POSITIONS:
            counts["positions"] += ensure_position(session, office, kind)[1]
    for p in doc.get("people", []):
        position, created = ensure_position(session, units[p["unit"]], PositionKind(p["position"]))
        counts["positions"] += created
        if _holders(session, position.id):
            continue
        person = session.scalar(
            select(Person).where(Person.name == p["name"], Person.title == p.get("title", ""))
        )
        if person is None:
            person = Person(name=p["name"], title=p.get("title", ""), email=p.get("email", ""))
            session.add(person)
            counts["people"] += 1
        session.add(Holding(position=position, person=person, started_at=now))
    session.flush()
    counts["assistance settings"] = _load_assistance(session, doc, by_code)
    counts["settings"] = _load_settings(session, doc, by_code)
    from .indicators import load_indicators

    counts["indicators"] = 0
    for code in {i["jurisdiction"] for i in doc.get("indicators", [])}:
        wanted = [i for i in doc["indicators"] if i["jurisdiction"] == code]
        counts["indicators"] += load_indicators(
            session, by_code[code], wanted, lambda name, c=code: find_unit(session, name, c)
        )
    session.flush()
    return counts


def ensure_position(session: Session, unit: Unit, kind: PositionKind) -> tuple[Position, int]:
    position = session.scalar(
        select(Position).where(Position.unit_id == unit.id, Position.kind == kind)
    )
    if position is not None:
        return position, 0
    position = Position(unit=unit, kind=kind, title=POSITION_TITLES[kind])
    session.add(position)
    session.flush()
    return position, 1


def _holders(session: Session, position_id: int) -> list[Holding]:
    return list(
        session.scalars(
            select(Holding).where(Holding.position_id == position_id, Holding.ended_at.is_(None))
        )
    )


def holders(session: Session, position_id: int) -> list[Person]:
    return [h.person for h in _holders(session, position_id)]


# Built once: checked on every completion.
HOLDS = Direct(  # checked in every step (engine.runtime.may_act): sent to the driver directly
    select(Holding.id)
    .where(
        Holding.person_id == bindparam("person_id"),
        Holding.position_id == bindparam("position_id"),
        Holding.ended_at.is_(None),
    )
    .limit(1)
)


def holds(session: Session, person_id: int, position_id: int) -> bool:
    session.flush()  # a holding just made through the ORM counts
    found = rows(session.connection(), HOLDS, {"person_id": person_id, "position_id": position_id})
    return bool(found)


def positions_of(session: Session, person_id: int) -> list[Position]:
    return list(
        session.scalars(
            select(Position)
            .join(Holding)
            .where(Holding.person_id == person_id, Holding.ended_at.is_(None))
        )
    )


def hand_over(session: Session, position: Position, successor: Person, now: datetime) -> None:
    """The successor takes the seat; the previous holders leave it. Open work stays with the
    position, so the successor sees it at once."""
    for holding in _holders(session, position.id):
        if holding.person_id == successor.id:
            return
        holding.ended_at = now
    session.add(Holding(position=position, person=successor, started_at=now))
    session.flush()


def jurisdiction(session: Session, code: str) -> Jurisdiction:
    row = session.scalar(select(Jurisdiction).where(Jurisdiction.code == code))
    if row is None:
        raise NotFound(f"no jurisdiction with code '{code}'")
    return row


def descendants(session: Session, root: Jurisdiction) -> list[Jurisdiction]:
    """The jurisdiction and everything below it (a county and its townships)."""
    result, frontier = [root], [root.id]
    while frontier:
        children = list(
            session.scalars(select(Jurisdiction).where(Jurisdiction.parent_id.in_(frontier)))
        )
        result += children
        frontier = [c.id for c in children]
    return result


def unit_names(session: Session, scope: list[Jurisdiction]) -> dict[str, Unit]:
    """Every name and alias of every unit in `scope`, to resolve names written in a list."""
    ids = [j.id for j in scope]
    names = {u.name: u for u in session.scalars(select(Unit).where(Unit.jurisdiction_id.in_(ids)))}
    for alias in session.scalars(select(UnitAlias).where(UnitAlias.jurisdiction_id.in_(ids))):
        names.setdefault(alias.alias, alias.unit)
    return names


def find_unit(session: Session, name: str, jurisdiction_code: str | None = None) -> Unit:
    """A unit by name or alias, optionally within one jurisdiction and below."""
    scope = (
        descendants(session, jurisdiction(session, jurisdiction_code))
        if jurisdiction_code
        else list(session.scalars(select(Jurisdiction)))
    )
    matches = {u.id: u for n, u in unit_names(session, scope).items() if n == name}
    if not matches:
        raise NotFound(f"no unit named '{name}'")
    if len(matches) > 1:
        raise NotFound(f"'{name}' names units in several jurisdictions; give the jurisdiction")
    return next(iter(matches.values()))


def position_of(session: Session, unit: Unit, kind: str) -> Position:
    try:
        wanted = PositionKind(kind)
    except ValueError:
        raise NotFound(f"unknown position '{kind}'") from None
    position = session.scalar(
        select(Position).where(Position.unit_id == unit.id, Position.kind == wanted)
    )
    if position is None:
        raise NotFound(f"{unit.name} has no position '{kind}'")
    return position
