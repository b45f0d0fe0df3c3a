"""Messages from Jinja2 templates, one per event and language: the first line is the subject,
the rest (after a blank line) the body."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from engine.clock import LOCAL_TZ, as_utc

TEMPLATES = Path(__file__).with_name("templates")
LOCALES = ("zh_CN", "en")
STATUS = {
    "zh_CN": {
        "in_review": "审核中",
        "documents": "需要您补充材料",
        "approved": "已批准",
        "rejected": "不予救助",
        "not_eligible": "未获认定",
        "redirected": "请通过低保/特困渠道申请",
        "withdrawn": "已撤回",
    },
    "en": {
        "in_review": "being reviewed",
        "documents": "more documents needed from you",
        "approved": "approved",
        "rejected": "not granted",
        "not_eligible": "household not confirmed",
        "redirected": "apply through 低保 / 特困 medical aid instead",
        "withdrawn": "withdrawn",
    },
}


def _local_date(value: str) -> str:
    if not value:
        return ""
    try:
        return as_utc(datetime.fromisoformat(value)).astimezone(LOCAL_TZ).date().isoformat()
    except ValueError:
        return value


@cache
def _environment() -> Environment:
    # Plain text: the web app escapes a notice when it shows one.
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters["local_date"] = _local_date
    env.filters["status_zh"] = lambda s: STATUS["zh_CN"].get(s, s)
    env.filters["status_en"] = lambda s: STATUS["en"].get(s, s)
    return env


def render(event: str, context: dict[str, Any], locale: str, link: str) -> tuple[str, str]:
    """(subject, body) of `event` in `locale` (zh_CN when the locale has no template)."""
    locale = locale if locale in LOCALES else "zh_CN"
    template = _environment().get_template(f"{event}.{locale}.txt")
    defaults = {"unit": "", "item": "", "due": "", "step": "", "note": "", "by": "", "reason": ""}
    text = template.render({**defaults, **context, "link": link})
    subject, _, body = text.partition("\n")
    return subject.strip(), body.strip()
