"""The applicant's portal and the bureaus' pages for medical assistance, through the Flask
client: sign-up, drafts, submission, requests for documents, withdrawal, the decision letter,
and the privacy rules (masked unless a step needs it, every unmasking recorded)."""

from __future__ import annotations

import io
import re

from sqlalchemy import select

from engine.clock import FixedClock, utcnow
from engine.idcard import check_character
from engine.models import Application, ApplicationStatus, HistoryEntry, HumanTask, Instance
from tests.helpers import act
from tests.processes.test_medical_assistance import application_data
from tests.web.conftest import sign_in

ID = "53342319600101002" + check_character("53342319600101002")
MASKED = "533*************" + ID[-2:]
PDF = b"%PDF-1.4 settlement"


def form(**override: str) -> dict[str, object]:
    """The application as the portal posts it (the engine tests' data), submitting."""
    return {**application_data(resident_id=ID), "action": "submit", **override}


def register(client, login: str = "hexiuying") -> None:  # type: ignore[no-untyped-def]
    response = client.post(
        "/register",
        data={"name": "和秀英", "login": login, "password": "secret-123", "confirm": "secret-123"},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/apply")


def submitted(client, seeded) -> int:  # type: ignore[no-untyped-def]
    register(client)
    data = form()
    data["files"] = (io.BytesIO(PDF), "结算单.pdf")
    response = client.post("/apply/new", data=data, content_type="multipart/form-data")
    assert response.status_code == 302, response.get_data(as_text=True)
    match = re.search(r"/apply/(\d+)$", response.headers["Location"])
    assert match
    assert ID not in response.headers["Location"]
    return int(match.group(1))


def open_step(seeded, element: str) -> HumanTask:  # type: ignore[no-untyped-def]
    with seeded() as s:
        return s.scalars(
            select(HumanTask).where(HumanTask.element_id == element, HumanTask.state == "ready")
        ).one()


def test_register_errors_are_specific(client) -> None:  # type: ignore[no-untyped-def]
    bad = client.post(
        "/register", data={"name": "甲", "login": "jia", "password": "secret-123", "confirm": "x"}
    )
    assert bad.status_code == 400 and 'data-error="confirm"' in bad.get_data(as_text=True)
    short = client.post(
        "/register", data={"name": "甲", "login": "jia", "password": "short", "confirm": "short"}
    )
    assert short.status_code == 400 and 'data-error="password"' in short.get_data(as_text=True)
    register(client, "jia")
    client.post("/logout")
    taken = client.post(
        "/register",
        data={"name": "乙", "login": "jia", "password": "secret-123", "confirm": "secret-123"},
    )
    assert taken.status_code == 400 and 'data-error="login"' in taken.get_data(as_text=True)


def test_an_applicant_sees_the_portal_not_the_inbox(client) -> None:  # type: ignore[no-untyped-def]
    register(client)
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].endswith("/apply")
    page = client.get("/apply").get_data(as_text=True)
    assert 'id="new-application"' in page and 'data-nav="inbox"' not in page


def test_a_draft_is_saved_and_a_bad_submission_names_the_fields(client, seeded) -> None:  # type: ignore[no-untyped-def]
    register(client)
    response = client.post("/apply/new", data=form(action="save", total_cost=""))
    assert response.status_code == 302
    app_id = int(response.headers["Location"].rsplit("/", 1)[1])
    page = client.get(f"/apply/{app_id}").get_data(as_text=True)
    assert 'id="application-form"' in page and "维西县人民医院" in page
    with seeded() as s:
        revision = s.get(Application, app_id).revision
    bad = client.post(
        f"/apply/{app_id}",
        data=form(
            resident_id=ID[:-1] + ("0" if ID[-1] != "0" else "1"),
            total_cost="",
            revision=str(revision),
        ),
    )
    body = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert 'data-error="resident_id"' in body and 'data-error="total_cost"' in body
    assert 'data-error="files"' in body
    with seeded() as s:
        app = s.get(Application, app_id)
        assert app.status == ApplicationStatus.DRAFT and app.instance_id is None
        assert app.total_cost is None  # the failed submission saved nothing


def test_submission_timeline_and_other_applicants_see_nothing(app, seeded) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    owner, stranger = app.test_client(), app.test_client()
    app_id = submitted(owner, seeded)
    page = owner.get(f"/apply/{app_id}").get_data(as_text=True)
    assert 'id="timeline"' in page and "审核中" in page
    assert MASKED in page and ID not in page  # even the applicant's own page masks the ID
    register(stranger, "stranger")
    for path in (f"/apply/{app_id}", f"/apply/{app_id}/letter", f"/apply/{app_id}/files/1"):
        assert stranger.get(path).status_code == 404
    assert stranger.post(f"/apply/{app_id}/withdraw").status_code == 404
    assert f"/apply/{app_id}" not in stranger.get("/apply").get_data(as_text=True)


def test_the_bureau_sees_masked_data_until_it_asks_and_the_asking_is_recorded(
    app, seeded, make_person
) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant, bureau = app.test_client(), app.test_client()
    submitted(applicant, seeded)
    step = open_step(seeded, "confirm_family")
    sign_in(bureau, make_person("health", "县卫生健康局"))
    inbox = bureau.get("/inbox").get_data(as_text=True)
    assert f"/tasks/{step.id}" in inbox
    page = bureau.get(f"/tasks/{step.id}").get_data(as_text=True)
    assert MASKED in page and ID not in page and 'id="reveal-form"' in page
    assert "维西县人民医院" not in page  # medical details masked too
    shown = bureau.post(f"/tasks/{step.id}/reveal")
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200 and ID in body and 'id="revealed-note"' in body
    # This step reveals identity only, not the medical details.
    assert "维西县人民医院" not in body
    with seeded() as s:
        entry = s.scalars(select(HistoryEntry).where(HistoryEntry.action == "revealed")).one()
        assert entry.human_task_id == step.id and entry.data == {"fields": ["identity"]}
        # Personal data stays out of the workflow state and the history.
        instance = s.get(Instance, step.instance_id)
        assert ID.encode() not in instance.state
        for h in s.scalars(select(HistoryEntry)):
            assert ID not in str(h.data)


def test_a_unit_with_no_step_learns_nothing(app, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant, other = app.test_client(), app.test_client()
    submitted(applicant, seeded)
    step = open_step(seeded, "confirm_family")
    sign_in(other, make_person("education", "县教育体育局"))
    assert other.get(f"/tasks/{step.id}").status_code == 404
    assert other.post(f"/tasks/{step.id}/reveal").status_code == 404
    # Civil affairs is not yet involved (its step comes later).
    sign_in(other, make_person("civil", "县民政局"))
    assert other.get(f"/tasks/{step.id}").status_code == 404


def test_documents_requested_answered_and_resumed(app, seeded, make_person, clock) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant, bureau = app.test_client(), app.test_client()
    app_id = submitted(applicant, seeded)
    step = open_step(seeded, "confirm_family")
    sign_in(bureau, make_person("health", "县卫生健康局"))
    response = bureau.post(
        f"/tasks/{step.id}", data={"decision": "documents", "reason": "请补充独生子女证明"}
    )
    assert response.status_code == 302
    page = applicant.get(f"/apply/{app_id}").get_data(as_text=True)
    assert 'id="documents-request"' in page and "请补充独生子女证明" in page
    missing = applicant.post(f"/apply/{app_id}/documents", data={"note": ""})
    assert missing.status_code == 400 and 'data-error="note"' in missing.get_data(as_text=True)
    answered = applicant.post(
        f"/apply/{app_id}/documents",
        data={"note": "已补充", "files": (io.BytesIO(PDF), "证明.pdf")},
        content_type="multipart/form-data",
    )
    assert answered.status_code == 302
    again = open_step(seeded, "confirm_family")
    assert again.id != step.id
    with seeded() as s:
        app_row = s.get(Application, app_id)
        assert app_row.status == ApplicationStatus.IN_REVIEW and len(app_row.files) == 2


def test_withdrawn_from_the_portal(app, seeded) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant = app.test_client()
    app_id = submitted(applicant, seeded)
    response = applicant.post(f"/apply/{app_id}/withdraw", data={"reason": "已在外地报销"})
    assert response.status_code == 302
    page = applicant.get(f"/apply/{app_id}").get_data(as_text=True)
    assert "已撤回" in page and "已在外地报销" in page
    with seeded() as s:
        assert not s.scalars(select(HumanTask).where(HumanTask.state == "ready")).all()


def test_decision_letter_after_approval(app, seeded, clock, make_person) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant = app.test_client()
    app_id = submitted(applicant, seeded)
    assert applicant.get(f"/apply/{app_id}/letter").status_code == 404  # no decision yet
    act(seeded, open_step(seeded, "confirm_family"), clock, decision="confirm")
    act(seeded, open_step(seeded, "confirm_civil"), clock, decision="confirm")
    act(
        seeded,
        open_step(seeded, "verify_insurance"),
        clock,
        decision="verified",
        verified_basic="20000",
        verified_critical="5000",
    )
    reviewer = app.test_client()
    sign_in(reviewer, make_person("reviewer", "县医疗保障局", "reviewer"))
    decide = open_step(seeded, "approve_aid")
    page = reviewer.get(f"/tasks/{decide.id}").get_data(as_text=True)
    assert 'id="step-form"' in page
    assert reviewer.post(f"/tasks/{decide.id}", data={"decision": "approve"}).status_code == 302
    letter = applicant.get(f"/apply/{app_id}/letter").get_data(as_text=True)
    assert "14700.00" in letter and MASKED in letter and ID not in letter
    status = applicant.get(f"/apply/{app_id}").get_data(as_text=True)
    assert 'id="letter-link"' in status and "已批准" in status


def test_a_bureau_document_download_is_recorded(app, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant, bureau = app.test_client(), app.test_client()
    app_id = submitted(applicant, seeded)
    step = open_step(seeded, "confirm_family")
    sign_in(bureau, make_person("health", "县卫生健康局"))
    with seeded() as s:
        file_id = s.get(Application, app_id).files[0].id
    response = bureau.post(f"/tasks/{step.id}/application-files/{file_id}")
    body = response.data
    response.close()
    assert response.status_code == 200 and body == PDF
    assert response.headers["Cache-Control"] == "private, no-store"
    with seeded() as s:
        assert s.scalars(select(HistoryEntry).where(HistoryEntry.action == "file_viewed")).one()


def test_the_applicant_is_told_of_news_until_they_look(app, seeded, make_person, clock) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant = app.test_client()
    app_id = submitted(applicant, seeded)
    applicant.get(f"/apply/{app_id}")  # looked after submitting
    assert 'id="news-count"' not in applicant.get("/apply").get_data(as_text=True)
    later = FixedClock(utcnow())  # the web app runs on the real clock: act between the looks
    act(seeded, open_step(seeded, "confirm_family"), later, decision="documents", reason="缺证明")
    portal = applicant.get("/apply").get_data(as_text=True)
    assert 'id="news-count"' in portal and 'class="badge news"' in portal
    page = applicant.get(f"/apply/{app_id}").get_data(as_text=True)
    assert 'id="news"' in page and "缺证明" in page
    assert 'id="news-count"' not in applicant.get("/apply").get_data(as_text=True)


def test_a_bureau_sees_its_own_step_not_the_others(app, seeded, make_person, clock) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    applicant, civil = app.test_client(), app.test_client()
    submitted(applicant, seeded)
    health_step = open_step(seeded, "confirm_family")
    act(seeded, health_step, clock, decision="confirm")
    sign_in(civil, make_person("civil", "县民政局"))
    own = open_step(seeded, "confirm_civil")
    assert civil.get(f"/tasks/{own.id}").status_code == 200
    # Civil affairs now takes part, yet the health bureau's step stays the health bureau's.
    assert civil.get(f"/tasks/{health_step.id}").status_code == 404
    assert civil.get(f"/tasks/{open_step(seeded, 'confirm_rural').id}").status_code == 404
