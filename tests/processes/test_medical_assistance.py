"""Special-family medical assistance end to end through the engine: every path of
processes/medical_assistance.bpmn, with the application row kept in step."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import assistance
from engine.clock import FixedClock
from engine.errors import Conflict, FormError, PermissionDenied
from engine.items import AttachmentStore
from engine.models import (
    Account,
    Application,
    ApplicationStatus,
    HistoryEntry,
    HumanTask,
    Instance,
    InstanceStatus,
    Person,
    TaskState,
)
from engine.runtime import Actor, complete_task

PDF = b"%PDF-1.4 settlement statement"


def _valid_id() -> str:
    from engine.idcard import check_character

    return "53342319600101002" + check_character("53342319600101002")


def application_data(**override: Any) -> dict[str, Any]:
    data = {
        "jurisdiction": "weixi",
        "applicant_name": "和秀英",
        "resident_id": _valid_id(),
        "phone": "13988776655",
        "address": "保和镇",
        "family_kind": "child_deceased",
        "relationship": "parent",
        "existing_support": "none",
        "hospital": "维西县人民医院",
        "diagnosis": "肺炎",
        "admitted_on": "2026-10-01",
        "discharged_on": "2026-10-20",
        "total_cost": "50000",
        "basic_reimbursed": "20000",
        "critical_reimbursed": "5000",
    }
    return {**data, **override}


@pytest.fixture
def store(tmp_path) -> AttachmentStore:  # type: ignore[no-untyped-def]
    return AttachmentStore(tmp_path / "files")


def make_applicant(sessions: sessionmaker[Session], login: str = "applicant") -> int:
    with sessions.begin() as session:
        person = Person(name="和秀英")
        session.add(person)
        session.flush()
        account = Account(person_id=person.id, login=login, password_hash="x")
        session.add(account)
        session.flush()
        return account.id


def apply(
    sessions: sessionmaker[Session],
    store: AttachmentStore,
    clock: FixedClock,
    account_id: int,
    **override: Any,
) -> int:
    with sessions.begin() as session:
        account = session.get(Account, account_id)
        assert account is not None
        app = assistance.save_draft(session, account, application_data(**override), clock())
        assistance.add_file(session, store, app, account, "结算单.pdf", PDF, clock())
        assistance.submit(session, app, account, clock())
        return app.id


def state(sessions: sessionmaker[Session], app_id: int) -> tuple[Application, list[str]]:
    """The application and the elements of its open steps."""
    with sessions() as session:
        app = session.get(Application, app_id)
        assert app is not None
        session.expunge(app)
        return app, [t.element_id for t in assistance.waiting_on(session, app)]


def step(
    sessions: sessionmaker[Session], app_id: int, element: str, clock: FixedClock, **data: Any
) -> None:
    """The bureau holding `element`'s step decides, as its own position."""
    with sessions.begin() as session:
        app = session.get(Application, app_id)
        assert app is not None
        task = next(t for t in assistance.waiting_on(session, app) if t.element_id == element)
        complete_task(session, task.id, Actor(position_id=task.position_id), data, clock())


VERIFIED = {"decision": "verified", "verified_basic": "20000", "verified_critical": "5000"}


def test_approved_through_civil_affairs(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded))
    app, waiting = state(seeded, app_id)
    assert app.status == ApplicationStatus.IN_REVIEW and waiting == ["confirm_family"]
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    assert state(seeded, app_id)[1] == ["confirm_civil", "confirm_rural"]
    step(seeded, app_id, "confirm_civil", clock, decision="confirm")
    # Either confirmation suffices: rural revitalisation's step ended with it.
    assert state(seeded, app_id)[1] == ["verify_insurance"]
    step(seeded, app_id, "verify_insurance", clock, **VERIFIED, settlement_no="JS-2026-001")
    app, waiting = state(seeded, app_id)
    assert waiting == ["approve_aid"] and app.status == ApplicationStatus.IN_REVIEW
    step(seeded, app_id, "approve_aid", clock, decision="approve")
    app, waiting = state(seeded, app_id)
    assert waiting == [] and app.status == ApplicationStatus.APPROVED
    assert app.confirmation == "near_low_income"
    # (50,000 - 20,000 - 5,000 - 500 deductible) × 60 %, under the 30,000 cap
    assert app.aid_amount == Decimal("14700.00")
    assert app.decision is not None and app.decision["settlement_no"] == "JS-2026-001"
    assert not app.hardship_relief and not app.monitored
    with seeded() as session:
        rural = session.scalars(
            select(HumanTask).where(HumanTask.element_id == "confirm_rural")
        ).one()
        assert rural.state == TaskState.CANCELLED
        assert session.get(Instance, app.instance_id).status == InstanceStatus.COMPLETED


def test_approved_through_rural_revitalisation(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded))
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(
        seeded,
        app_id,
        "confirm_civil",
        clock,
        decision="not_confirmed",
        reason="收入超过低保边缘标准",
    )
    assert state(seeded, app_id)[1] == ["confirm_rural"]
    step(seeded, app_id, "confirm_rural", clock, decision="confirm")
    step(seeded, app_id, "verify_insurance", clock, **VERIFIED)
    step(seeded, app_id, "approve_aid", clock, decision="approve")
    app, _ = state(seeded, app_id)
    assert app.status == ApplicationStatus.APPROVED and app.confirmation == "poverty_risk"
    assert app.aid_amount == Decimal("17150.00")  # 24,500 × 70 %


def test_verified_amounts_replace_declared_ones(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded))
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(seeded, app_id, "confirm_rural", clock, decision="confirm")
    step(
        seeded,
        app_id,
        "verify_insurance",
        clock,
        decision="verified",
        verified_basic="30000",
        verified_critical="10000",
    )
    step(seeded, app_id, "approve_aid", clock, decision="approve")
    app, _ = state(seeded, app_id)
    assert app.decision is not None and app.decision["remaining"] == 10000
    assert app.aid_amount == Decimal("6650.00")  # (10,000 - 500) × 70 %


def test_already_on_dibao_is_routed_out_at_once(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded), existing_support="dibao")
    app, waiting = state(seeded, app_id)
    assert app.status == ApplicationStatus.REDIRECTED and waiting == []


def test_civil_affairs_finds_the_family_on_tekun(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded))
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(seeded, app_id, "confirm_civil", clock, decision="covered", reason="已纳入特困供养")
    app, waiting = state(seeded, app_id)
    assert app.status == ApplicationStatus.REDIRECTED and waiting == []
    assert app.reason == "已纳入特困供养"


def test_neither_bureau_confirms(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded))
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(seeded, app_id, "confirm_civil", clock, decision="not_confirmed", reason="不符合")
    step(seeded, app_id, "confirm_rural", clock, decision="not_confirmed", reason="无风险")
    app, waiting = state(seeded, app_id)
    assert app.status == ApplicationStatus.NOT_ELIGIBLE and waiting == []


def test_documents_requested_then_resumed_where_it_was(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    account_id = make_applicant(seeded)
    app_id = apply(seeded, store, clock, account_id)
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(seeded, app_id, "confirm_civil", clock, decision="not_confirmed", reason="不符合")
    step(seeded, app_id, "confirm_rural", clock, decision="confirm")
    step(
        seeded,
        app_id,
        "verify_insurance",
        clock,
        decision="documents",
        reason="请补充大病保险结算单",
    )
    app, waiting = state(seeded, app_id)
    assert app.status == ApplicationStatus.DOCUMENTS_REQUESTED
    assert app.reason == "请补充大病保险结算单" and waiting == ["supply_for_insurance"]
    with seeded.begin() as session:
        account = session.get(Account, account_id)
        app = session.get(Application, app_id)
        assistance.add_file(session, store, app, account, "大病保险结算单.pdf", PDF, clock())
        assistance.supply_documents(session, app, account, "已补充", clock())
    app, waiting = state(seeded, app_id)
    assert app.status == ApplicationStatus.IN_REVIEW and waiting == ["verify_insurance"]
    step(seeded, app_id, "verify_insurance", clock, **VERIFIED)
    step(seeded, app_id, "approve_aid", clock, decision="approve")
    assert state(seeded, app_id)[0].status == ApplicationStatus.APPROVED
    with seeded() as session:
        app = session.get(Application, app_id)
        assert len(app.files) == 2 and app.files[1].human_task_id is not None
        events = [e.what for e in assistance.timeline(session, app)]
    assert events[:2] == ["drafted", "submitted"]
    assert "step:documents" in events and "step:supplied" in events and events[-1] == "approved"


def test_a_request_from_one_branch_ends_when_the_other_confirms(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded))
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(seeded, app_id, "confirm_civil", clock, decision="documents", reason="请补充收入证明")
    assert state(seeded, app_id)[1] == ["confirm_rural", "supply_for_civil"]
    assert state(seeded, app_id)[0].status == ApplicationStatus.DOCUMENTS_REQUESTED
    step(seeded, app_id, "confirm_rural", clock, decision="confirm")
    app, waiting = state(seeded, app_id)
    assert waiting == ["verify_insurance"] and app.status == ApplicationStatus.IN_REVIEW


def test_rejected_with_a_reason(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded))
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(seeded, app_id, "confirm_civil", clock, decision="reject", reason="材料不实")
    app, waiting = state(seeded, app_id)
    # A rejection in one parallel branch ends the whole application.
    assert app.status == ApplicationStatus.REJECTED and waiting == [] and app.reason == "材料不实"
    with pytest.raises(FormError) as err:
        app_id2 = apply(seeded, store, clock, make_applicant(seeded, "other"))
        step(seeded, app_id2, "confirm_family", clock, decision="reject")
    assert "reason" in err.value.errors


def test_withdrawn_by_the_applicant(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    account_id = make_applicant(seeded)
    app_id = apply(seeded, store, clock, account_id)
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    with seeded.begin() as session:
        assistance.withdraw(
            session,
            session.get(Application, app_id),
            session.get(Account, account_id),
            clock(),
            "已在外地报销",
        )
    app, waiting = state(seeded, app_id)
    assert app.status == ApplicationStatus.WITHDRAWN and waiting == []
    with seeded() as session:
        assert session.get(Instance, app.instance_id).status == InstanceStatus.CANCELLED
        actions = session.scalars(
            select(HistoryEntry.action).where(HistoryEntry.instance_id == app.instance_id)
        ).all()
        assert "withdrawn" in actions
        with pytest.raises(Conflict):
            assistance.withdraw(
                session, session.get(Application, app_id), session.get(Account, account_id), clock()
            )


def test_dehong_grants_hardship_relief_and_monitoring(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    app_id = apply(seeded, store, clock, make_applicant(seeded), jurisdiction="dehong")
    step(seeded, app_id, "confirm_family", clock, decision="confirm")
    step(seeded, app_id, "confirm_civil", clock, decision="confirm")
    step(seeded, app_id, "verify_insurance", clock, **VERIFIED)
    step(seeded, app_id, "approve_aid", clock, decision="approve")
    app, _ = state(seeded, app_id)
    assert app.status == ApplicationStatus.APPROVED and app.hardship_relief and app.monitored


def test_each_side_acts_only_on_its_own_steps(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    owner = make_applicant(seeded)
    stranger = make_applicant(seeded, "stranger")
    app_id = apply(seeded, store, clock, owner)
    step(seeded, app_id, "confirm_family", clock, decision="documents", reason="请补充独生子女证")
    with seeded.begin() as session:
        app = session.get(Application, app_id)
        request = assistance.open_request(session, app)
        assert request is not None and request.unit_id is None
        health = session.scalars(
            select(HumanTask).where(HumanTask.element_id == "confirm_family")
        ).first()
        # The bureau cannot answer for the applicant, nor another applicant.
        with pytest.raises(PermissionDenied):
            complete_task(session, request.id, Actor(health.position_id), {"note": "x"}, clock())
        with pytest.raises(PermissionDenied):
            complete_task(
                session, request.id, Actor(None, account_id=stranger), {"note": "x"}, clock()
            )
        from engine.errors import NotFound

        with pytest.raises(NotFound):
            assistance.supply_documents(session, app, session.get(Account, stranger), "x", clock())


def test_a_draft_must_be_complete_to_submit(seeded, store, clock) -> None:  # type: ignore[no-untyped-def]
    account_id = make_applicant(seeded)
    with seeded.begin() as session:
        account = session.get(Account, account_id)
        app = assistance.save_draft(
            session, account, {"jurisdiction": "weixi", "applicant_name": "和秀英"}, clock()
        )
        app_id = app.id
        with pytest.raises(FormError) as err:
            assistance.submit(session, app, account, clock())
    assert {"resident_id", "hospital", "total_cost", "files"} <= set(err.value.errors)
    with seeded.begin() as session:
        account = session.get(Account, account_id)
        app = session.get(Application, app_id)
        bad = application_data(
            resident_id="533423196001010021", basic_reimbursed="60000", discharged_on="2026-09-01"
        )
        assistance.save_draft(session, account, bad, clock(), app, app.revision)
        assistance.add_file(session, store, app, account, "a.pdf", PDF, clock())
        with pytest.raises(FormError) as err:
            assistance.submit(session, app, account, clock())
    problems = err.value.errors
    assert "check digit" in problems["resident_id"]
    assert "exceed" in problems["critical_reimbursed"]
    assert problems["discharged_on"] == "must not be before admitted_on"
    with seeded() as session:
        assert session.get(Application, app_id).status == ApplicationStatus.DRAFT


def test_a_stale_draft_edit_is_refused(seeded, clock) -> None:  # type: ignore[no-untyped-def]
    account_id = make_applicant(seeded)
    with seeded.begin() as session:
        account = session.get(Account, account_id)
        app = assistance.save_draft(session, account, {"jurisdiction": "weixi"}, clock())
        app_id, first = app.id, app.revision
    with seeded.begin() as session:
        account, app = session.get(Account, account_id), session.get(Application, app_id)
        assistance.save_draft(session, account, {"applicant_name": "甲"}, clock(), app, first)
    with seeded.begin() as session:
        account, app = session.get(Account, account_id), session.get(Application, app_id)
        with pytest.raises(Conflict):
            assistance.save_draft(session, account, {"applicant_name": "乙"}, clock(), app, first)
    with seeded() as session:
        assert session.get(Application, app_id).applicant_name == "甲"
