"""Every error under /api/ is JSON: {"error": "what is wrong"}, with {"errors": {field: message}}
added when a form or an upload was refused. HTML pages elsewhere keep their own handling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request
from werkzeug.exceptions import (
    HTTPException,
    InternalServerError,
    NotFound,
    RequestEntityTooLarge,
)
from werkzeug.wrappers import Response

from engine.errors import FormError
from engine.items import MAX_ATTACHMENT_BYTES

from .common import bp, json_response

# The codes the API answers with, each handled on the blueprint (which wins over any handler
# the app registers for the same code).
CODES = (400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 500)
# Raised before a request reaches a view (an unknown /api/ address, a wrong method): these
# are answered by the application, for /api/ paths only.
ROUTING_CODES = (404, 405)

Handler = Callable[[Any], Any]


def error_response(exc: HTTPException) -> Response:
    code = exc.code or 500
    message = exc.description if exc.description else exc.name
    if isinstance(exc, InternalServerError):
        message = "the server failed to answer this request; nothing was changed"
    elif isinstance(exc, RequestEntityTooLarge):
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        message = (
            f"the request is over the limit of {limit} bytes "
            f"(an attachment may be at most {MAX_ATTACHMENT_BYTES // 1048576} MB)"
        )
    response = json_response({"error": message}, code)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers.add(name, value)
    return response


def form_errors(exc: FormError) -> Response:
    return json_response({"error": str(exc), "errors": exc.errors}, 400)


def _for_blueprint(exc: HTTPException) -> Response:
    return error_response(exc)


def is_api_path() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def _routing_handler(previous: Handler | None) -> Handler:
    def handle(exc: HTTPException) -> Any:
        if is_api_path():
            if exc.code == 404:  # no endpoint here at all (not: no such row)
                exc = NotFound("no such address in the API (see /api/v1/openapi.json)")
            return error_response(exc)
        return previous(exc) if previous is not None else exc

    return handle


def init_app(app: Flask) -> None:
    """JSON for /api/ addresses that match no endpoint; handlers registered earlier for the
    same codes keep answering every other path."""
    for code in ROUTING_CODES:
        exc_class, _ = app._get_exc_class_and_code(code)
        previous = app.error_handler_spec[None][code].get(exc_class)
        app.register_error_handler(code, _routing_handler(previous))


for _code in CODES:
    bp.register_error_handler(_code, _for_blueprint)
