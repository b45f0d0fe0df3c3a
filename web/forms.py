"""How the engine's step forms look on a page: labels and input widgets per field kind.
Validation stays in engine.forms, the single source of truth for what a step accepts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l

from engine.forms import Field, Form

FORM_TITLES = {
    "acknowledge": _l("Acknowledge receipt"),
    "plan": _l("Work plan and due dates"),
    "contribute": _l("Contribution"),
    "report": _l("Progress report"),
    "consolidate": _l("Consolidated report"),
    "review": _l("Review"),
    "decide_extension": _l("Extension request"),
    "assist_confirm_family": _l("Special-family status"),
    "assist_confirm_household": _l("Household confirmation"),
    "assist_verify": _l("Reimbursement check"),
    "assist_decide": _l("Aid decision"),
    "assist_supply": _l("More documents"),
    "minutes_submit": _l("Send the draft minutes for review"),
    "minutes_review": _l("Review of the minutes"),
    "minutes_finalize": _l("Final text, for signature"),
    "minutes_sign": _l("Sign-off (签发)"),
    "indicator_report": _l("Indicator figure"),
}
FIELD_LABELS = {
    "note": _l("Note"),
    "plan": _l("Work plan"),
    "support_due": _l("Supporting units due by"),
    "implement_due": _l("Implementing units due by"),
    "final_due": _l("Consolidated report due by"),
    "action": _l("Action"),
    "requested_due": _l("Requested new due date"),
    "reason": _l("Reason"),
    "content": _l("Content"),
    "evidence": _l("Evidence (description)"),
    "final": _l("This is the final report"),
    "summary": _l("Summary"),
    "decision": _l("Decision"),
    "approved": _l("Approve the extension"),
    "new_due": _l("New due date"),
    "comment": _l("Comment"),
    "verified_basic": _l("Basic medical insurance paid, per the settlement record (yuan)"),
    "verified_critical": _l("Critical-illness insurance paid, per the settlement record (yuan)"),
    "settlement_no": _l("Settlement record number"),
    "value": _l("Value"),
}
CHOICE_LABELS = {
    "submit": _l("Submit"),
    "request_extension": _l("Request an extension"),
    "report": _l("Report progress"),
    "close": _l("Close the item"),
    "send_back": _l("Send back to the lead unit"),
    "confirm": _l("Confirm"),
    "not_confirmed": _l("Not confirmed"),
    "covered": _l("Already on 低保 / 特困: apply through that scheme"),
    "documents": _l("Ask the applicant for more documents"),
    "reject": _l("Reject"),
    "verified": _l("Amounts verified"),
    "approve": _l("Approve the aid"),
    "agree": _l("Agree"),
    "comment": _l("Comment"),
    "sign": _l("Sign off (签发)"),
    "return": _l("Return to the office with comments"),
}
LONG_TEXT = {"plan", "content", "summary", "reason", "note", "evidence", "comment"}


@dataclass(frozen=True)
class Widget:
    field: Field
    value: Any
    input: str  # textarea | text | date | checkbox | select
    choices: tuple[tuple[str, Any], ...] = ()


def form_title(form_name: str) -> str:
    return str(FORM_TITLES.get(form_name, form_name))


def field_label(name: str) -> str:
    return str(FIELD_LABELS.get(name, name))


def field_widgets(form: Form, values: dict[str, Any]) -> list[Widget]:
    widgets = []
    for f in form.fields:
        value = values.get(f.name, f.default if f.default is not None else "")
        if f.kind == "choice":
            choices = tuple((c, CHOICE_LABELS.get(c, c)) for c in f.choices)
            widgets.append(Widget(f, value, "select", choices))
        elif f.kind == "bool":
            widgets.append(Widget(f, value in (True, "true", "on", "1"), "checkbox"))
        elif f.kind == "date":
            widgets.append(Widget(f, value, "date"))
        else:
            widgets.append(Widget(f, value, "textarea" if f.name in LONG_TEXT else "text"))
    return widgets
