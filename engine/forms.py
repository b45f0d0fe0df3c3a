"""The forms of human steps. A BPMN user task names its form with the `form` property; the
engine checks submitted data here before it touches the workflow, so a bad field is reported
by name and nothing runs."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from .clock import parse_day
from .errors import FormError

MAX_TEXT = 10_000
# Text may hold line breaks and tabs, nothing else below U+0020 (PostgreSQL refuses NUL).
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# An amount as people write one: digits, or digits grouped by commas in threes, then an
# optional decimal part. Decimal() alone also takes '1_000', '1e3', '-0' and 'NaN'.
AMOUNT = re.compile(r"(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # text | date | bool | choice | money
    required: bool = False
    # Required only when another field has this value, e.g. ("action", "request_extension").
    required_when: tuple[str, Any] | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    max_length: int = MAX_TEXT
    not_before_today: bool = False


Check = Callable[[dict[str, Any]], dict[str, str]]


@dataclass(frozen=True)
class Form:
    name: str
    fields: tuple[Field, ...]
    check: Check | None = field(default=None)

    @property
    def field_names(self) -> set[str]:
        return {f.name for f in self.fields}


def _coerce(f: Field, raw: Any, today: date) -> Any:
    """Turn one submitted value into its stored form, or raise ValueError with the reason."""
    if f.kind == "text":
        if not isinstance(raw, str):
            raise ValueError("must be text")
        if CONTROL.search(raw):
            raise ValueError("contains control characters")
        value = raw.strip()
        if len(value) > f.max_length:
            raise ValueError(f"is longer than {f.max_length} characters")
        return value
    if f.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in {"true", "yes", "on", "1", "false", "no", "0"}:
            return raw.lower() in {"true", "yes", "on", "1"}
        raise ValueError("must be true or false")
    if f.kind == "choice":
        if raw not in f.choices:
            raise ValueError(f"must be one of {', '.join(f.choices)}")
        return raw
    if f.kind == "date":
        try:
            day = parse_day(raw if isinstance(raw, str) else "")
        except ValueError:
            raise ValueError("must be a date as YYYY-MM-DD") from None
        if f.not_before_today and day < today:
            raise ValueError(f"must not be before today ({today.isoformat()})")
        return day.isoformat()
    if f.kind == "money":
        return _money(raw)
    raise AssertionError(f"unknown field kind {f.kind}")


MAX_MONEY = Decimal("999999999.99")


def _money(raw: Any) -> float:
    """Yuan with at most two decimals, as a float: workflow data must stay JSON."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError("must be an amount in yuan, such as 1234.50")
    text = str(raw).strip()
    if not AMOUNT.fullmatch(text):
        raise ValueError("must be an amount in yuan, such as 1234.50")
    value = Decimal(text.replace(",", ""))
    if value > MAX_MONEY:
        raise ValueError("must be between 0 and 999,999,999.99")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError("must have at most two decimals")
    return float(value)


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


def validate(form: Form, data: Mapping[str, Any], today: date) -> dict[str, Any]:
    """Return the clean data (every field present, defaults filled) or raise FormError."""
    errors: dict[str, str] = {}
    unknown = sorted(set(data) - form.field_names)
    for name in unknown:
        errors[name] = f"is not a field of form '{form.name}'"
    clean: dict[str, Any] = {}
    for f in form.fields:
        raw = data.get(f.name)
        if _is_empty(raw):
            clean[f.name] = f.default
            continue
        try:
            clean[f.name] = _coerce(f, raw, today)
        except ValueError as exc:
            errors[f.name] = str(exc)
    for f in form.fields:
        needed = f.required or (
            f.required_when is not None and clean.get(f.required_when[0]) == f.required_when[1]
        )
        if needed and _is_empty(clean.get(f.name)) and f.name not in errors:
            errors[f.name] = "is required"
    if not errors and form.check is not None:
        errors.update(form.check(clean))
    if errors:
        raise FormError(errors)
    return clean


def _plan_dates_in_order(data: dict[str, Any]) -> dict[str, str]:
    final = data["final_due"]
    return {
        name: "must not be after final_due"
        for name in ("support_due", "implement_due")
        if data[name] > final
    }


def _text(name: str, **kw: Any) -> Field:
    return Field(name, "text", default="", **kw)


def _extension_fields(action_choices: tuple[str, ...], default: str) -> tuple[Field, ...]:
    ext = ("action", "request_extension")
    return (
        Field("action", "choice", choices=action_choices, default=default),
        Field("requested_due", "date", required_when=ext, not_before_today=True),
        _text("reason", required_when=ext, max_length=2000),
    )


def _reason_unless(*needless: str) -> Check:
    """The decision needs a reason, except the ones named (a plain yes)."""

    def check(data: dict[str, Any]) -> dict[str, str]:
        if data["decision"] not in needless and not data["reason"]:
            return {"reason": f"is required when the decision is '{data['decision']}'"}
        return {}

    return check


def _decision(*choices: str) -> tuple[Field, ...]:
    return (
        Field("decision", "choice", required=True, choices=choices),
        _text("reason", max_length=2000),
        _text("note", max_length=2000),
    )


FORMS: dict[str, Form] = {
    form.name: form
    for form in (
        Form("acknowledge", (_text("note", max_length=2000),)),
        Form(
            "plan",
            (
                _text("plan", required=True),
                Field("support_due", "date", required=True, not_before_today=True),
                Field("implement_due", "date", required=True, not_before_today=True),
                Field("final_due", "date", required=True, not_before_today=True),
            ),
            _plan_dates_in_order,
        ),
        Form(
            "contribute",
            (
                *_extension_fields(("submit", "request_extension"), "submit"),
                _text("content", required_when=("action", "submit")),
                _text("evidence", max_length=2000),
            ),
        ),
        Form(
            "report",
            (
                *_extension_fields(("report", "request_extension"), "report"),
                _text("content", required_when=("action", "report")),
                _text("evidence", max_length=2000),
                Field("final", "bool", default=False),
            ),
        ),
        Form("consolidate", (_text("summary", required=True), _text("evidence", max_length=2000))),
        Form(
            "review",
            (
                Field("decision", "choice", required=True, choices=("close", "send_back")),
                _text("reason", required_when=("decision", "send_back"), max_length=2000),
            ),
        ),
        # Special-family medical assistance (processes/medical_assistance.bpmn). "documents"
        # asks the applicant for more papers; the reason is what the applicant reads.
        Form(
            "assist_confirm_family",
            _decision("confirm", "documents", "reject"),
            _reason_unless("confirm"),
        ),
        Form(
            "assist_confirm_household",
            _decision("confirm", "not_confirmed", "covered", "documents", "reject"),
            _reason_unless("confirm"),
        ),
        Form(
            "assist_verify",
            (
                *_decision("verified", "documents", "reject"),
                Field("verified_basic", "money", required_when=("decision", "verified")),
                Field("verified_critical", "money", required_when=("decision", "verified")),
                _text("settlement_no", max_length=64),
            ),
            _reason_unless("verified"),
        ),
        Form(
            "assist_decide", _decision("approve", "documents", "reject"), _reason_unless("approve")
        ),
        Form("assist_supply", (_text("note", required=True, max_length=2000),)),
        # An indicator's actual for a year (processes/indicator_report.bpmn).
        Form(
            "indicator_report",
            (Field("value", "money", required=True), _text("note", max_length=2000)),
        ),
        # The joint meeting's minutes (processes/meeting_minutes.bpmn).
        Form("minutes_submit", (_text("note", max_length=2000),)),
        Form(
            "minutes_review",
            (
                Field("decision", "choice", required=True, choices=("agree", "comment")),
                _text("comment", required_when=("decision", "comment"), max_length=4000),
            ),
        ),
        Form("minutes_finalize", (_text("note", max_length=2000),)),
        Form(
            "minutes_sign",
            (
                Field("decision", "choice", required=True, choices=("sign", "return")),
                _text("comment", required_when=("decision", "return"), max_length=4000),
            ),
        ),
        Form(
            "decide_extension",
            (
                Field("approved", "bool", required=True),
                Field("new_due", "date", required_when=("approved", True), not_before_today=True),
                _text("comment", max_length=2000),
            ),
        ),
    )
}
