"""The medical aid decision table (processes/medical_aid_rates.dmn), case by case, run by
SpiffWorkflow in memory from the verified amounts to the amount the reviewer sees."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine.specs import new_parser

PROCESSES = Path(__file__).resolve().parents[2] / "processes"


@pytest.fixture(scope="module")
def specs() -> Any:
    parser = new_parser()
    parser.add_bpmn_file(str(PROCESSES / "medical_assistance.bpmn"))
    parser.add_dmn_file(str(PROCESSES / "medical_aid_rates.dmn"))
    return parser.get_spec("medical_assistance"), parser.get_subprocess_specs("medical_assistance")


def decide(specs: Any, confirmation: str, remaining: float, relief: bool = False) -> dict:
    """Drive one application to the reviewer's step and return the workflow data there."""
    workflow = BpmnWorkflow(*specs)
    start = workflow.get_tasks(state=TaskState.READY)[0]
    start.set_data(
        application_id=1,
        applicant=1,
        health_unit=1,
        civil_unit=2,
        rural_unit=3,
        insurance_unit=4,
        reviewer_unit=4,
        hardship_relief_enabled=relief,
        existing_support="",
        total_cost=remaining,
        basic_reimbursed=0.0,
        critical_reimbursed=0.0,
    )
    workflow.do_engine_steps()
    civil = "confirm" if confirmation == "near_low_income" else "not_confirmed"
    rural = "confirm" if confirmation == "poverty_risk" else "not_confirmed"
    answers = {
        "confirm_family": {"decision": "confirm"},
        "confirm_civil": {"decision": civil},
        "confirm_rural": {"decision": rural},
        "verify_insurance": {
            "decision": "verified",
            "verified_basic": 0.0,
            "verified_critical": 0.0,
        },
    }
    while True:
        ready = workflow.get_tasks(state=TaskState.READY, manual=True)
        if ready[0].task_spec.bpmn_id == "approve_aid":
            return ready[0].data
        ready[0].set_data(**answers[ready[0].task_spec.bpmn_id])
        ready[0].run()
        workflow.do_engine_steps()


@pytest.mark.parametrize(
    ("confirmation", "remaining", "rate", "cap", "amount"),
    [
        ("near_low_income", 10_000, 0.6, 30_000, 5_700.0),  # (10,000 - 500) × 60 %
        ("near_low_income", 29_999.99, 0.6, 30_000, 17_699.99),
        ("near_low_income", 30_000, 0.7, 50_000, 20_650.0),  # the bracket starts at 30,000
        ("near_low_income", 200_000, 0.7, 50_000, 50_000.0),  # capped
        ("poverty_risk", 10_000, 0.7, 40_000, 6_650.0),
        ("poverty_risk", 30_000, 0.8, 60_000, 23_600.0),
        ("poverty_risk", 100_000, 0.8, 60_000, 60_000.0),  # capped
        ("poverty_risk", 300, 0.7, 40_000, 0.0),  # below the deductible
    ],
)
def test_rates_caps_and_amounts(specs, confirmation, remaining, rate, cap, amount) -> None:  # type: ignore[no-untyped-def]
    data = decide(specs, confirmation, remaining)
    assert (data["confirmation"], data["rate"], data["cap"], data["deductible"]) == (
        confirmation,
        rate,
        cap,
        500,
    )
    assert data["aid_amount"] == amount


def test_hardship_relief_follows_the_setting(specs) -> None:  # type: ignore[no-untyped-def]
    assert decide(specs, "poverty_risk", 5_000, relief=True)["hardship_relief"] is True
    assert decide(specs, "poverty_risk", 5_000, relief=False)["monitored"] is False
