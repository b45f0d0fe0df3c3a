"""The channels a notice travels by besides the in-app list: e-mail over SMTP and a webhook
(a JSON POST, e.g. to a government messaging robot). A channel sends one message or raises."""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol


class Channel(Protocol):
    name: str

    def send(self, address: str, subject: str, body: str, payload: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    tls: str = "none"  # none | starttls | ssl
    username: str = ""
    password: str = ""
    sender: str = "duban@localhost"
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> SmtpSettings | None:
        """DUBAN_SMTP_HOST (unset: no e-mail), _PORT, _TLS, _USER, _PASSWORD, _FROM."""
        host = os.environ.get("DUBAN_SMTP_HOST")
        if not host:
            return None
        tls = os.environ.get("DUBAN_SMTP_TLS", "none")
        default_port = {"ssl": 465, "starttls": 587}.get(tls, 25)
        return cls(
            host=host,
            port=int(os.environ.get("DUBAN_SMTP_PORT", default_port)),
            tls=tls,
            username=os.environ.get("DUBAN_SMTP_USER", ""),
            password=os.environ.get("DUBAN_SMTP_PASSWORD", ""),
            sender=os.environ.get("DUBAN_SMTP_FROM", "duban@localhost"),
        )


class EmailChannel:
    name = "email"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def send(self, address: str, subject: str, body: str, payload: dict[str, Any]) -> None:
        s = self.settings
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = s.sender, address, subject
        # One id per outbox row, the same on every attempt: a retry is recognisable as one.
        domain = s.sender.rpartition("@")[2] or "duban"
        message["Message-ID"] = f"<duban-outbox-{payload.get('outbox_id', 0)}@{domain}>"
        message.set_content(body)
        if s.tls == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with client:
            if s.tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if s.username:
                client.login(s.username, s.password)
            client.send_message(message)


class WebhookChannel:
    name = "webhook"

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout

    def send(self, address: str, subject: str, body: str, payload: dict[str, Any]) -> None:
        if not address.startswith(("http://", "https://")):
            raise ValueError(f"webhook address is not an http(s) URL: {address}")
        data = json.dumps(
            {"msgtype": "text", "text": {"content": f"{subject}\n{body}"}, **payload},
            ensure_ascii=False,
        ).encode()
        request = urllib.request.Request(
            address, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered {response.status}")


def default_channels() -> dict[str, Channel]:
    channels: dict[str, Channel] = {"webhook": WebhookChannel()}
    smtp = SmtpSettings.from_env()
    if smtp is not None:
        channels["email"] = EmailChannel(smtp)
    return channels
