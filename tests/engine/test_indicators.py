"""Indicators: the seed's targets, the responsible unit's report through its routed step, the
office's acceptance, and target against actual."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from engine.calendar_rules import run_calendar
from engine.directory import jurisdiction
from engine.errors import Conflict
from engine.indicators import request_report, standings
from engine.models import HumanTask, Indicator, TaskState
from tests.helpers import act


def _steps(seeded, element: str) -> list[HumanTask]:  # type: ignore[no-untyped-def]
    with seeded() as s:
        return list(
            s.scalars(
                select(HumanTask).where(
                    HumanTask.element_id == element, HumanTask.state == TaskState.READY
                )
            )
        )


def test_targets_from_the_seed(seeded) -> None:  # type: ignore[no-untyped-def]
    with seeded() as s:
        weixi = jurisdiction(s, "weixi").id
        rows = {x.indicator.code: x for x in standings(s, weixi, 2024)}
        assert rows["childcare_places"].target == Decimal("586")
        assert rows["subsidised_places"].target == Decimal("352")
        assert rows["maternal_mortality"].indicator.direction == "at_most"
        assert rows["places_per_thousand"].target is None  # a 2025 target only
        assert {x.indicator.unit.name for x in rows.values()} == {"县卫生健康局"}


def test_reported_checked_sent_back_and_recorded(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        indicator = s.scalars(select(Indicator).where(Indicator.code == "childcare_places")).one()
        request_report(s, indicator, 2025, date(2025, 12, 31), clock())
        with pytest.raises(Conflict):
            request_report(s, indicator, 2025, date(2025, 12, 31), clock())
        weixi = indicator.jurisdiction_id
    (report,) = _steps(seeded, "report_indicator")
    act(seeded, report, clock, value="600")
    (check,) = _steps(seeded, "check_indicator")
    act(seeded, check, clock, decision="send_back", reason="请核实")
    (again,) = _steps(seeded, "report_indicator")
    act(seeded, again, clock, value="660", note="含新建普惠园")
    with seeded() as s:
        assert {x.indicator.code: x.actual for x in standings(s, weixi, 2025)}[
            "childcare_places"
        ] is None
    act(seeded, _steps(seeded, "check_indicator")[0], clock, decision="close")
    with seeded() as s:
        row = {x.indicator.code: x for x in standings(s, weixi, 2025)}["childcare_places"]
        assert row.actual == Decimal("660") and row.gap == Decimal("4") and row.met is True


def test_the_calendar_asks_for_the_years_figures(seeded) -> None:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        done = run_calendar(s, datetime(2025, 11, 5, 2, 0, tzinfo=UTC))
    assert "indicators:weixi:2025" in done
    assert len(_steps(seeded, "report_indicator")) == 7  # every indicator with a 2025 target
