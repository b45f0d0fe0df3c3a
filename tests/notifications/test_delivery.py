"""Delivery through real servers on 127.0.0.1: an SMTP server (aiosmtpd) and an HTTP receiver
for webhooks. The outbox sends after commit, retries with back-off while a server is down, and
sends each message once; templates render in both languages; no personal data in a message."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from engine.models import ChannelPreference, Outbox, Person
from engine.notify import EVENTS, notify
from notifications.channels import EmailChannel, SmtpSettings, WebhookChannel
from notifications.outbox import backoff, deliver
from notifications.render import render


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_port() -> int:
    return _free_port()


def _smtp(port: int) -> tuple[Controller, Inbox]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, inbox


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"errcode":0}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/robot/send", _Receiver.received
    server.shutdown()
    server.server_close()


def _subject(message: Any) -> str:
    return str(make_header(decode_header(message["Subject"])))


def _people(seeded, clock, webhook_url: str = "") -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with seeded.begin() as s:
        a = Person(name="联络员甲", email="jia@example.cn")
        b = Person(name="联络员乙", email="yi@example.cn")
        s.add_all([a, b])
        s.flush()
        if webhook_url:
            s.add(ChannelPreference(person_id=b.id, channel="webhook", address=webhook_url))
            s.add(ChannelPreference(person_id=b.id, channel="email", enabled=False))
        notify(
            s,
            [a.id, b.id, a.id],
            "overdue",
            {
                "step": "签收",
                "unit": "县农业农村局",
                "item": "weixi-2023-15#7",
                "due": "2026-11-28T15:59:59+00:00",
            },
            "/tasks/9",
            clock(),
        )
        return a.id, b.id


def test_smtp_down_for_an_hour_then_everything_arrives_once(seeded, clock, smtp_port) -> None:  # type: ignore[no-untyped-def]
    _people(seeded, clock)
    email = {"email": EmailChannel(SmtpSettings(port=smtp_port, timeout=2))}
    # The server is down: both deliveries fail, are kept, and wait.
    down = deliver(seeded, email, clock())
    assert (down.sent, down.failed) == (0, 2)
    with seeded() as s:
        rows = s.scalars(select(Outbox)).all()
        assert all(r.attempts == 1 and r.sent_at is None and r.last_error for r in rows)
        assert all(r.next_attempt_at == clock() + backoff(1) for r in rows)
    assert deliver(seeded, email, clock()).failed == 0  # not yet due again
    hour = clock() + timedelta(hours=1)
    for minute in range(0, 60, 5):  # the scheduler keeps trying while the server is down
        deliver(seeded, email, clock() + timedelta(minutes=minute))
    controller, inbox = _smtp(smtp_port)
    try:
        up = deliver(seeded, email, hour + backoff(99))
        again = deliver(seeded, email, hour + timedelta(days=1))
    finally:
        controller.stop()
    assert (up.sent, again.sent) == (2, 0)
    assert sorted(m["To"] for m in inbox.messages) == ["jia@example.cn", "yi@example.cn"]
    assert all(m["Message-ID"].startswith("<duban-outbox-") for m in inbox.messages)
    subject = _subject(inbox.messages[0])
    assert subject == "【督办】已逾期：签收（县农业农村局）"
    body = inbox.messages[0].get_payload(decode=True).decode()
    assert "2026-11-28" in body and "/tasks/9" in body


def test_webhook_and_preferences(seeded, clock, webhook, smtp_port) -> None:  # type: ignore[no-untyped-def]
    url, received = webhook
    _people(seeded, clock, url)
    controller, inbox = _smtp(smtp_port)
    try:
        result = deliver(
            seeded,
            {"email": EmailChannel(SmtpSettings(port=smtp_port)), "webhook": WebhookChannel()},
            clock(),
            base_url="https://duban.example",
        )
    finally:
        controller.stop()
    assert result.sent == 2
    # 乙 chose the webhook instead of e-mail; 甲 keeps e-mail. Every notice is in-app too.
    assert [m["To"] for m in inbox.messages] == ["jia@example.cn"]
    (post,) = received
    assert post["msgtype"] == "text" and post["event"] == "overdue"
    assert post["link"] == "https://duban.example/tasks/9"
    assert "已逾期" in post["text"]["content"]


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_every_event_renders_in_both_languages(locale: str) -> None:
    context = {
        "step": "签收",
        "unit": "县民政局",
        "item": "weixi-2023-15#7",
        "due": "2026-11-28T15:59:59+00:00",
        "task_id": 1,
        "reason": "材料不全",
        "approved": True,
        "new_due": "2026-12-31",
        "application": 12,
        "status": "documents",
        "meeting": "全体会议",
        "number": "纪要〔2026〕1号",
        "version": 1,
        "jurisdiction": "维西县",
        "deadline": "2026-11-15",
        "note": "",
        "by": "张键伟",
    }
    for event in EVENTS:
        subject, body = render(event, context, locale, "/x")
        assert subject and body and "/x" in body, event
        assert subject.startswith("【督办】" if locale == "zh_CN" else "[duban]"), event


def test_an_application_notice_carries_no_personal_data(seeded, clock, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from engine.items import AttachmentStore
    from engine.models import Notification
    from tests.processes.test_medical_assistance import apply, make_applicant, step

    app_id = apply(seeded, AttachmentStore(tmp_path), clock, make_applicant(seeded))
    step(seeded, app_id, "confirm_family", clock, decision="documents", reason="请补充证明")
    with seeded() as s:
        notices = s.scalars(select(Notification)).all()
        applicant = [n for n in notices if n.event == "application_status"]
        assert applicant, "the applicant hears of the submission's status"
        for n in notices:
            text = json.dumps(n.context, ensure_ascii=False)
            for locale in ("zh_CN", "en"):
                text += "".join(render(n.event, n.context, locale, n.link))
            assert "5334231960" not in text and "维西县人民医院" not in text and "肺炎" not in text
