"""Indicators (指标): the plans' measurable targets, a target per year, and the actual that the
responsible unit reports through a routed step (processes/indicator_report.bpmn) and the office
accepts. The dashboard shows target against actual with the gap."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import Conflict, NotFound
from .models import (
    Indicator,
    IndicatorActual,
    IndicatorTarget,
    Instance,
    InstanceStatus,
    Jurisdiction,
)
from .runtime import ON_SAVE, Actor, last_completed, start_instance

PROCESS_ID = "indicator_report"


def request_report(
    session: Session,
    indicator: Indicator,
    year: int,
    due: date,
    now: datetime,
    actor: Actor | None = None,
) -> Instance:
    """Ask the responsible unit for the year's actual (once at a time per indicator and year)."""
    jurisdiction = session.get(Jurisdiction, indicator.jurisdiction_id)
    if jurisdiction is None or jurisdiction.office_unit_id is None:
        raise NotFound("the indicator's jurisdiction has no joint-meeting office")
    key = f"indicator-{indicator.id}-{year}"
    running = session.scalar(
        select(Instance.id).where(
            Instance.business_key == key,
            Instance.process_id == PROCESS_ID,
            Instance.status == InstanceStatus.RUNNING,
        )
    )
    if running is not None:
        raise Conflict(f"a report of {indicator.name} for {year} is already under way")
    done = session.scalar(
        select(func.count(Instance.id)).where(
            Instance.business_key.like(f"{key}%"), Instance.process_id == PROCESS_ID
        )
    )
    data = {
        "indicator_id": indicator.id,
        "year": year,
        "unit": indicator.unit_id,
        "office_unit": jurisdiction.office_unit_id,
        "due": due.isoformat(),
    }
    return start_instance(
        session,
        PROCESS_ID,
        data,
        key if not done else f"{key}~{done + 1}",
        now,
        actor=actor,
        jurisdiction_id=indicator.jurisdiction_id,
    )


def _record(session: Session, instance: Instance, workflow: BpmnWorkflow, now: datetime) -> None:
    """When the office accepts the figure, it becomes the year's actual."""
    if not workflow.is_completed():
        return
    data = workflow.data
    report = last_completed(session, instance.id, "report_indicator")
    actual = session.scalar(
        select(IndicatorActual).where(
            IndicatorActual.indicator_id == data["indicator_id"],
            IndicatorActual.year == data["year"],
        )
    )
    if actual is None:
        actual = IndicatorActual(indicator_id=data["indicator_id"], year=data["year"])
        session.add(actual)
    actual.value = Decimal(str(data["value"]))
    actual.note = str(data.get("note") or "")
    actual.human_task_id = report.id if report else None
    actual.reported_at = now


ON_SAVE[PROCESS_ID] = _record


@dataclass(frozen=True)
class Standing:
    indicator: Indicator
    year: int
    target: Decimal | None
    actual: Decimal | None

    @property
    def gap(self) -> Decimal | None:
        if self.target is None or self.actual is None:
            return None
        return self.actual - self.target

    @property
    def met(self) -> bool | None:
        if self.gap is None:
            return None
        return self.gap >= 0 if self.indicator.direction == "at_least" else self.gap <= 0


def standings(session: Session, jurisdiction_id: int, year: int) -> list[Standing]:
    indicators = session.scalars(
        select(Indicator).where(Indicator.jurisdiction_id == jurisdiction_id).order_by(Indicator.id)
    ).all()
    targets = {
        t.indicator_id: t.target
        for t in session.scalars(select(IndicatorTarget).where(IndicatorTarget.year == year))
    }
    actuals = {
        a.indicator_id: a.value
        for a in session.scalars(select(IndicatorActual).where(IndicatorActual.year == year))
    }
    return [Standing(i, year, targets.get(i.id), actuals.get(i.id)) for i in indicators]


def load_indicators(
    session: Session, jurisdiction: Jurisdiction, rows: list[dict[str, Any]], unit_of: Any
) -> int:
    """From a directory file's [[indicators]]: create what is missing; targets are set anew."""
    created = 0
    for row in rows:
        indicator = session.scalar(
            select(Indicator).where(
                Indicator.jurisdiction_id == jurisdiction.id, Indicator.code == row["code"]
            )
        )
        unit_id = unit_of(row["unit"]).id  # before anything is added: the lookup flushes
        if indicator is None:
            indicator = Indicator(jurisdiction_id=jurisdiction.id, code=row["code"])
            created += 1
        indicator.name = row["name"]
        indicator.measure = row.get("measure", "")
        indicator.direction = row.get("direction", "at_least")
        indicator.unit_id = unit_id
        indicator.source = row.get("source", "")
        session.add(indicator)
        have = {t.year: t for t in indicator.targets}
        for year, value in row.get("targets", {}).items():
            target = have.get(int(year))
            if target is None:
                indicator.targets.append(
                    IndicatorTarget(year=int(year), target=Decimal(str(value)))
                )
            else:
                target.target = Decimal(str(value))
    session.flush()
    return created
