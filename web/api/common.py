"""What every endpoint shares: the blueprint, bearer-token sign-in, reading requests, and the
visibility rules (engine.access, exactly as the HTML screens apply them)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, current_app, g, request
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from werkzeug.wrappers import Response

from engine.access import Viewer, bearer, can_see_item, can_see_task
from engine.accounts import record_token_use
from engine.clock import utcnow
from engine.models import HumanTask, Instance
from engine.runtime import owner, read_step
from web import get_session

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = {"api.openapi"}
MAX_ID = 2**31 - 1  # ids are 32-bit on every backend: anything larger names nothing
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/=-]{1,200})", re.IGNORECASE)


@dataclass(frozen=True)
class Caller:
    """Who the token belongs to, and their rights (computed once per request)."""

    account_id: int
    person_id: int
    name: str
    locale: str
    viewer: Viewer


class BearerRequired(Unauthorized):
    def __init__(self, description: str, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.bearer_error = error

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [
            *super().get_headers(*args, **kwargs),
            ("WWW-Authenticate", f'Bearer realm="duban", error="{self.bearer_error}"'),
        ]


def _token() -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise BearerRequired("send 'Authorization: Bearer <token>'", "invalid_request")
    match = _BEARER.fullmatch(header.strip())
    if match is None:
        raise BearerRequired("the Authorization header must be 'Bearer <token>'", "invalid_request")
    return match.group(1)


def _authenticate(token: str) -> Caller | None:
    """Token, account and rights are read in the request's own session; when the token's use
    must be recorded (once a minute) that write is committed at once, so the transaction that
    follows holds exactly the operation's work."""
    session, now = get_session(), utcnow()
    found = bearer(session, token)
    if found is None:
        return None
    holder, viewer = found
    if holder.use_is_stale(now):
        record_token_use(session, holder.token_id, now)
        session.commit()
    return Caller(holder.id, holder.person_id, holder.name, holder.locale, viewer)


@bp.before_request
def _sign_in() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    caller = _authenticate(_token())
    if caller is None:
        raise BearerRequired("the token is unknown, revoked, or its account is disabled")
    g.api_caller = caller
    g.viewer = caller.viewer  # what web.auth.current_viewer() would compute


def caller() -> Caller:
    found: Caller = g.api_caller
    return found


def viewer() -> Viewer:
    return caller().viewer


def json_response(payload: Any, status: int = 200) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    response: Response = current_app.response_class(body, status, mimetype="application/json")
    return response


def visible_task(task_id: int) -> HumanTask:
    """A step the caller may see; anyone else learns nothing, not even that it exists."""
    session = get_session()
    task = read_step(session, task_id) if 0 < task_id <= MAX_ID else None
    if task is None or not can_see_task(session, viewer(), task):
        raise NotFound(f"no step {task_id}")
    return task


def visible_item(root_id: int) -> Instance:
    session = get_session()
    root = session.get(Instance, root_id) if 0 < root_id <= MAX_ID else None
    if root is None or root.parent_id is not None or not can_see_item(session, viewer(), root):
        raise NotFound(f"no item {root_id}")
    return root


def forbidden(task: HumanTask, what: str) -> Forbidden:
    return Forbidden(
        f"step {task.id} belongs to {owner(get_session(), task)}; none of your positions may {what}"
    )


def _check_text(value: Any, where: str) -> None:
    """Strings the database can store: no NUL, no lone surrogates (from \\ud800 escapes)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise BadRequest(f"{where} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"{where} is not valid Unicode text") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, f"{where}: a key")
            _check_text(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_body(allowed: set[str], required: set[str]) -> dict[str, Any]:
    """The request's JSON object: 415 when it is not JSON, 400 when it is not an object or
    has unknown or missing members."""
    if not request.is_json:
        raise UnsupportedMediaType("send the body as application/json")
    try:
        body = json.loads(request.get_data(cache=True) or b"", parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        _check_text(body, "body")  # before any message repeats a member's name
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown member(s): {', '.join(unknown)}")
    missing = sorted(required - set(body))
    if missing:
        raise BadRequest(f"missing member(s): {', '.join(missing)}")
    return body
