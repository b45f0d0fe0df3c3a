"""Notifications in the web app: the office's 催办 on a step, the in-app list with its unread
count, opening a notice, and the channel settings."""

from __future__ import annotations

from sqlalchemy import select

from engine.models import ChannelPreference, HistoryEntry, HumanTask, TaskState
from engine.routing import hand_out
from tests.web.conftest import sign_in


def _ack(seeded, unit_id: int) -> HumanTask:  # type: ignore[no-untyped-def]
    with seeded() as s:
        return s.scalars(
            select(HumanTask).where(
                HumanTask.unit_id == unit_id,
                HumanTask.element_id == "acknowledge",
                HumanTask.state == TaskState.READY,
            )
        ).one()


def test_the_office_reminds_and_the_liaison_reads_it(app, seeded, make_person, clock) -> None:  # type: ignore[no-untyped-def]
    app.config["WTF_CSRF_ENABLED"] = False
    liaison = make_person("农业联络员", "县农业农村局")
    office = make_person("督办员", "县卫生健康局", "office_staff")
    with seeded.begin() as s:
        hand_out(s, "weixi-2023-15", [7], clock())
    with seeded() as s:
        from engine.directory import find_unit

        unit_id = find_unit(s, "县农业农村局").id
    step = _ack(seeded, unit_id)
    outsider, desk, officer = app.test_client(), app.test_client(), app.test_client()
    sign_in(outsider, make_person("财政联络员", "县财政局"))
    assert outsider.post(f"/tasks/{step.id}/remind", data={"note": "x"}).status_code in (403, 404)
    sign_in(officer, office)
    page = officer.get(f"/tasks/{step.id}").get_data(as_text=True)
    assert 'id="remind-form"' in page
    assert officer.post(f"/tasks/{step.id}/remind", data={"note": "请今天签收"}).status_code == 302
    with seeded() as s:
        entry = s.scalars(select(HistoryEntry).where(HistoryEntry.action == "urged")).one()
        assert entry.human_task_id == step.id and entry.data == {"note": "请今天签收"}
    sign_in(desk, liaison)
    inbox = desk.get("/inbox").get_data(as_text=True)
    assert 'id="unread-count">2<' in inbox  # assigned, then reminded
    listing = desk.get("/notifications").get_data(as_text=True)
    assert "【督办】催办：签收（县农业农村局）" in listing and "请今天签收" in listing
    notice_id = int(listing.split('data-notice="')[1].split('"')[0])
    opened = desk.get(f"/notifications/{notice_id}")
    assert opened.status_code == 302 and opened.headers["Location"].endswith(f"/tasks/{step.id}")
    assert 'id="unread-count">1<' in desk.get("/inbox").get_data(as_text=True)
    desk.post("/notifications/read")
    assert 'id="unread-count"' not in desk.get("/inbox").get_data(as_text=True)
    assert outsider.get(f"/notifications/{notice_id}").status_code == 404


def test_channel_settings_are_checked_and_saved(client, seeded, make_person) -> None:  # type: ignore[no-untyped-def]
    who = make_person("联络员", "县民政局")
    sign_in(client, who)
    bad = client.post(
        "/notifications/settings",
        data={
            "email": "1",
            "email_address": "not an address",
            "webhook": "1",
            "webhook_address": "",
        },
    )
    body = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert 'data-error="email_address"' in body and 'data-error="webhook_address"' in body
    good = client.post(
        "/notifications/settings",
        data={"email_address": "", "webhook": "1", "webhook_address": "https://robot.example/hook"},
    )
    assert good.status_code == 302
    with seeded() as s:
        prefs = {
            p.channel: p
            for p in s.scalars(
                select(ChannelPreference).where(ChannelPreference.person_id == who.person_id)
            )
        }
    assert not prefs["email"].enabled and prefs["webhook"].enabled
    assert prefs["webhook"].address == "https://robot.example/hook"
