"""The yearly deadlines of the seeds, started by themselves: each jurisdiction's townships or
counties report to it every year by a set day (Weixi: 30 November, Dehong: 10 December), and
the joint meeting must hold a comprehensive coordination meeting every year. A rule runs once
per jurisdiction and year: its `calendar_run` key makes a repeat, a restart or a second
scheduler a no-op."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .clock import local_today
from .indicators import request_report
from .meetings import MEMBER_KINDS, yearly_rule
from .models import (
    CalendarRun,
    Indicator,
    IndicatorTarget,
    Jurisdiction,
    JurisdictionSetting,
    Plan,
    PlanTask,
    PlanTaskUnit,
    Position,
    PositionKind,
    Role,
    Unit,
    UnitKind,
)
from .notify import holders_of, notify, seat
from .routing import hand_out

REPORT_BY = "report_collection_by"  # MM-DD
REPORT_LEAD_DAYS = "report_collection_lead_days"
DEFAULT_LEAD_DAYS = 30


def _settings(session: Session, jurisdiction_id: int) -> dict[str, str]:
    return dict(
        session.execute(
            select(JurisdictionSetting.key, JurisdictionSetting.value).where(
                JurisdictionSetting.jurisdiction_id == jurisdiction_id
            )
        ).all()
    )


def _claim(session: Session, key: str, now: datetime) -> bool:
    """Record that `key` has run; False if it already had (here or in another scheduler)."""
    if session.scalar(select(CalendarRun.id).where(CalendarRun.key == key)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(CalendarRun(key=key, at=now))
    except IntegrityError:  # the other scheduler got there first
        return False
    return True


def start_report_collection(
    session: Session, jurisdiction: Jurisdiction, year: int, deadline: date, now: datetime
) -> Plan | None:
    """A routed collection: every township (or county) of the jurisdiction reports its year's
    work to the office, which leads, consolidates and closes it."""
    office = jurisdiction.office_unit_id
    reporters = list(
        session.scalars(
            select(Unit.id)
            .join(Jurisdiction, Jurisdiction.id == Unit.jurisdiction_id)
            .where(
                Jurisdiction.parent_id == jurisdiction.id, Unit.kind == UnitKind.LOCAL_GOVERNMENT
            )
            .order_by(Unit.id)
        )
    )
    if office is None or not reporters:
        return None
    text = (
        f"报送{year}年度优化生育政策工作落实情况（{deadline.month}月{deadline.day}日前报"
        f"{jurisdiction.display_name}联席会议办公室）"
    )
    plan = Plan(
        key=f"annual-report-{jurisdiction.code}-{year}",
        title=f"{jurisdiction.display_name}{year}年度优化生育政策工作情况报告",
        list_title="年度报告",
        issued_on=local_today(now),
        jurisdiction_id=jurisdiction.id,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
    )
    units = [PlanTaskUnit(unit_id=office, role=Role.LEAD, ordinal=0)] + [
        PlanTaskUnit(unit_id=u, role=Role.IMPLEMENT, ordinal=n) for n, u in enumerate(reporters, 1)
    ]
    plan.tasks.append(PlanTask(number=1, text=text, due_on=deadline, units=units))
    session.add(plan)
    session.flush()
    hand_out(session, plan.key, None, now)
    return plan


def run_calendar(session: Session, now: datetime) -> list[str]:
    """Run every calendar rule that is due as of `now`; returns what it did."""
    today, done = local_today(now), []
    for jurisdiction in session.scalars(select(Jurisdiction).order_by(Jurisdiction.id)):
        settings = _settings(session, jurisdiction.id)
        if REPORT_BY in settings:
            month, day = (int(x) for x in settings[REPORT_BY].split("-"))
            deadline = date(today.year, month, day)
            lead = timedelta(days=int(settings.get(REPORT_LEAD_DAYS, DEFAULT_LEAD_DAYS)))
            key = f"report:{jurisdiction.code}:{today.year}"
            due = deadline - lead <= today <= deadline
            if (
                due
                and _claim(session, key, now)
                and start_report_collection(session, jurisdiction, today.year, deadline, now)
            ):
                done.append(key)
            # The year's indicator actuals are asked for in the same window.
            key = f"indicators:{jurisdiction.code}:{today.year}"
            targets = session.scalars(
                select(Indicator)
                .join(IndicatorTarget, IndicatorTarget.indicator_id == Indicator.id)
                .where(
                    Indicator.jurisdiction_id == jurisdiction.id, IndicatorTarget.year == today.year
                )
                .order_by(Indicator.id)
            ).all()
            if due and targets and _claim(session, key, now):
                for indicator in targets:
                    request_report(session, indicator, today.year, deadline, now)
                done.append(key)
        if jurisdiction.office_unit_id is not None:
            rule = yearly_rule(session, jurisdiction, today)
            key = f"meeting-warning:{jurisdiction.code}:{today.year}"
            if rule.due and _claim(session, key, now):
                # The office director and the convener are warned.
                director = seat(session, jurisdiction.office_unit_id, PositionKind.OFFICE_DIRECTOR)
                conveners = session.scalars(
                    select(Position.id)
                    .join(Unit, Unit.id == Position.unit_id)
                    .where(
                        Unit.jurisdiction_id == jurisdiction.id,
                        Position.kind == MEMBER_KINDS[0],
                    )
                ).all()
                notify(
                    session,
                    holders_of(session, [*([director] if director else []), *conveners]),
                    "yearly_meeting_due",
                    {
                        "jurisdiction": jurisdiction.display_name,
                        "deadline": rule.deadline.isoformat(),
                    },
                    "/meetings",
                    now,
                )
                done.append(key)
    return done
