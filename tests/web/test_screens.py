"""The liaison's screens through the Flask client: sign-in, inbox, task page, forms, evidence."""

from __future__ import annotations

import gc
import html
import io

import pytest
from sqlalchemy import func, select

from engine.models import Attachment, HumanTask, TaskState
from engine.routing import hand_out
from tests.helpers import act, completed_count, open_steps
from tests.web.conftest import PASSWORD, sign_in


@pytest.fixture
def item(seeded, clock):
    """Weixi task 7: lead 县卫生健康局, co-lead 县农业农村局."""
    with seeded.begin() as s:
        (instance,) = hand_out(s, "weixi-2023-15", [7], clock())
    return instance.id


def _step(seeded, item, unit_name, element=None):
    with seeded() as s:
        for step in open_steps(s, item):
            if step.unit.name == unit_name and element in (None, step.element_id):
                return step
    raise AssertionError(f"no open step for {unit_name}")


def test_sign_in_page_speaks_chinese_first_and_english_on_request(client):
    assert "登录" in client.get("/login").get_data(as_text=True)
    assert "Sign in" in client.get("/login?lang=en").get_data(as_text=True)
    assert client.get("/inbox").status_code == 302


def test_a_wrong_password_does_not_sign_in(client, make_person):
    someone = make_person("农业联络员", "县农业农村局")
    page = client.post("/login", data={"login": someone.login, "password": "nope-nope"})
    assert "账号或密码错误" in page.get_data(as_text=True)
    assert client.get("/inbox").status_code == 302


def test_a_liaison_sees_acts_and_finds_it_done(client, make_person, seeded, item):
    sign_in(client, make_person("农业联络员", "县农业农村局"))
    inbox = client.get("/inbox").get_data(as_text=True)
    step = _step(seeded, item, "县农业农村局")
    assert f'data-step="{step.id}"' in inbox and "签收" in inbox
    assert 'id="inbox-count">1<' in inbox
    page = client.get(f"/tasks/{step.id}").get_data(as_text=True)
    assert "加强人类辅助生殖技术规范应用" in page and "县卫生健康局" in page
    done = client.post(f"/tasks/{step.id}", data={"note": "收到"})
    assert done.status_code == 302
    assert 'id="inbox-count">0<' in client.get("/inbox").get_data(as_text=True)
    assert "签收" in client.get("/done").get_data(as_text=True)


def test_another_units_step_does_not_exist_for_you(client, make_person, seeded, item):
    sign_in(client, make_person("财政联络员", "县财政局"))
    step = _step(seeded, item, "县农业农村局")
    assert client.get(f"/tasks/{step.id}").status_code == 404
    assert client.post(f"/tasks/{step.id}", data={"note": "x"}).status_code == 404
    assert client.post(f"/tasks/{step.id}/comments", data={"body": "x"}).status_code == 404
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.READY


def test_a_unit_head_sees_the_units_step_but_does_not_act(client, make_person, seeded, item):
    sign_in(client, make_person("农业局长", "县农业农村局", "head"))
    step = _step(seeded, item, "县农业农村局")
    assert f'data-step="{step.id}"' in client.get("/inbox?scope=unit").get_data(as_text=True)
    assert f'data-step="{step.id}"' not in client.get("/inbox").get_data(as_text=True)
    page = client.get(f"/tasks/{step.id}").get_data(as_text=True)
    assert 'id="step-form"' not in page
    assert client.post(f"/tasks/{step.id}", data={"note": "x"}).status_code == 403


def test_the_office_sees_every_item_of_its_jurisdiction(client, make_person, seeded, item):
    sign_in(client, make_person("办公室主任", "县卫生健康局", "office_director"))
    step = _step(seeded, item, "县农业农村局")
    assert f'data-step="{step.id}"' in client.get("/inbox?scope=all").get_data(as_text=True)
    assert client.get(f"/tasks/{step.id}").status_code == 200
    assert client.get("/plans/weixi-2023-15").status_code == 200
    assert client.get("/plans/dehong-2023").status_code == 404


def test_the_offices_list_holds_its_own_lists_steps_and_filters_by_list(
    client, make_person, seeded, clock, item
):
    with seeded.begin() as s:
        (other,) = hand_out(s, "dehong-2023", [1], clock())
    with seeded() as s:
        elsewhere = [step.id for step in open_steps(s, other.id)]
    sign_in(client, make_person("办公室主任", "县卫生健康局", "office_director"))
    step = _step(seeded, item, "县农业农村局")
    everything = client.get("/inbox?scope=all").get_data(as_text=True)
    assert f'data-step="{step.id}"' in everything
    assert elsewhere and not any(f'data-step="{i}"' in everything for i in elsewhere)
    mine = client.get("/inbox?scope=all&plan=weixi-2023-15").get_data(as_text=True)
    assert f'data-step="{step.id}"' in mine
    theirs = client.get("/inbox?scope=all&plan=dehong-2023").get_data(as_text=True)
    assert f'data-step="{step.id}"' not in theirs
    assert not any(f'data-step="{i}"' in theirs for i in elsewhere)


def test_a_bad_form_is_answered_with_the_field_and_nothing_runs(
    client, make_person, seeded, clock, item
):
    for unit in ("县卫生健康局", "县农业农村局"):
        act(seeded, _step(seeded, item, unit), clock)
    sign_in(client, make_person("卫健联络员", "县卫生健康局"))
    plan = _step(seeded, item, "县卫生健康局", "set_plan")
    page = client.post(
        f"/tasks/{plan.id}",
        data={
            "plan": "计划",
            "support_due": "2026-13-01",
            "implement_due": "2026-12-01",
            "final_due": "2026-12-20",
        },
    )
    assert page.status_code == 400
    assert 'data-error="support_due"' in page.get_data(as_text=True)
    with seeded() as s:
        assert s.get(HumanTask, plan.id).state == TaskState.READY


def _to_contribution(seeded, clock, item):
    for unit in ("县卫生健康局", "县农业农村局"):
        act(seeded, _step(seeded, item, unit), clock)
    act(seeded, _step(seeded, item, "县卫生健康局", "set_plan"), clock)
    return _step(seeded, item, "县农业农村局", "contribute")


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_evidence_is_stored_with_the_step_and_only_shown_to_the_item(
    client, app, make_person, seeded, clock, item
):
    step = _to_contribution(seeded, clock, item)
    sign_in(client, make_person("农业联络员", "县农业农村局"))
    response = client.post(
        f"/tasks/{step.id}",
        data={"content": "已提供数据", "files": (io.BytesIO(PDF), "../../etc/报告.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    with seeded() as s:
        attachment = s.scalar(select(Attachment))
        assert attachment.filename == "报告.pdf" and attachment.human_task_id == step.id
    download = client.get(f"/attachments/{attachment.id}")
    assert download.status_code == 200 and download.data == PDF
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    download.close()
    other = app.test_client()
    sign_in(other, make_person("财政联络员", "县财政局"))
    assert other.get(f"/attachments/{attachment.id}").status_code == 404


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("virus.exe", b"MZ....", "type '.exe' is not allowed"),
        ("fake.pdf", b"MZ....", "content is not a .pdf file"),
    ],
)
def test_refused_evidence_stores_nothing(
    client, make_person, seeded, clock, item, name, content, message
):
    step = _to_contribution(seeded, clock, item)
    sign_in(client, make_person("农业联络员", "县农业农村局"))
    response = client.post(
        f"/tasks/{step.id}",
        data={"content": "材料", "files": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    assert message in html.unescape(response.get_data(as_text=True))
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Attachment)) == 0
        assert s.get(HumanTask, step.id).state == TaskState.READY


# Werkzeug leaves the spooled upload it refused to read open; collect it inside this test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_an_oversized_upload_is_refused(client, make_person, seeded, clock, item):
    step = _to_contribution(seeded, clock, item)
    sign_in(client, make_person("农业联络员", "县农业农村局"))
    big = io.BytesIO(b"%PDF" + b"0" * (12 * 1024 * 1024))
    response = client.post(
        f"/tasks/{step.id}",
        data={"content": "x", "files": (big, "a.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 413
    with seeded() as s:
        assert s.scalar(select(func.count()).select_from(Attachment)) == 0
    del big, response
    gc.collect()


def test_script_in_a_comment_is_shown_as_text(client, make_person, seeded, item):
    sign_in(client, make_person("农业联络员", "县农业农村局"))
    step = _step(seeded, item, "县农业农村局")
    payload = "<script>alert('x')</script>"
    client.post(f"/tasks/{step.id}/comments", data={"body": payload})
    page = client.get(f"/tasks/{step.id}").get_data(as_text=True)
    assert payload not in page and "&lt;script&gt;alert(" in page


def test_a_form_without_its_csrf_token_is_refused(app, make_person, seeded, item):
    app.config["WTF_CSRF_ENABLED"] = True
    browser = app.test_client()
    someone = make_person("农业联络员", "县农业农村局")
    assert (
        browser.post("/login", data={"login": someone.login, "password": PASSWORD}).status_code
        == 400
    )
    step = _step(seeded, item, "县农业农村局")
    assert browser.post(f"/tasks/{step.id}", data={"note": "x"}).status_code in (302, 400)
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.READY


def test_submitting_twice_is_a_conflict_recorded_once(client, make_person, seeded, item):
    sign_in(client, make_person("农业联络员", "县农业农村局"))
    step = _step(seeded, item, "县农业农村局")
    assert client.post(f"/tasks/{step.id}", data={"note": "一"}).status_code == 302
    again = client.post(f"/tasks/{step.id}", data={"note": "二"})
    assert again.status_code == 403 or "已被他人处理" in client.get(
        again.headers.get("Location", "/inbox")
    ).get_data(as_text=True)
    with seeded() as s:
        assert completed_count(s) == 1


def test_control_characters_are_refused_not_stored(client, make_person, seeded, item):
    sign_in(client, make_person("农业联络员", "县农业农村局"))
    step = _step(seeded, item, "县农业农村局")
    response = client.post(f"/tasks/{step.id}/comments", data={"body": "坏\x00字符"})
    assert response.status_code == 400
    assert client.post(f"/tasks/{step.id}", data={"note": "a\x00b"}).status_code == 400
    with seeded() as s:
        assert s.get(HumanTask, step.id).state == TaskState.READY
