"""When the database cannot be reached — the server restarted, a connection dropped in the
middle of a request, the server is down — the request ends with 503: a page, or under /api/ a
JSON error, in the user's language, saying so and to try again; never a stack trace. The
request's transaction never committed, so nothing of it was kept, and the pool has let the
broken connection go: the next request connects afresh (engine.db)."""

from __future__ import annotations

from flask import Flask, current_app, g, request, session
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError
from werkzeug.wrappers import Response

from .api.common import json_response
from .api.errors import is_api_path
from .i18n import DEFAULT_LOCALE, LOCALES

RETRY_AFTER_SECONDS = 10


def init_app(app: Flask) -> None:
    app.register_error_handler(DBAPIError, _database_error)


# PostgreSQL's answers when two transactions collided (a deadlock, a serialization failure, a
# lock not available): the database undid this one, nothing of it was kept, and the same request
# sent again will go through.
COLLISIONS = {"40P01", "40001", "55P03"}


def _database_error(error: DBAPIError) -> Response:
    if getattr(error.orig, "sqlstate", None) in COLLISIONS:
        return _collision(error)
    if not error.connection_invalidated:
        raise error  # any other database error is a fault: the usual 500
    current_app.logger.warning("database unavailable: %s", error.orig)
    with force_locale(_locale()):
        message = _(
            "The database could not be reached, so this request was not completed. "
            "Please try again in a moment."
        )
        if is_api_path():
            response = json_response({"error": message}, 503)
        else:
            page = _page(message, _("Service temporarily unavailable"))
            response = current_app.response_class(page, 503, mimetype="text/html")
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _collision(error: DBAPIError) -> Response:
    current_app.logger.warning("transaction collided and was undone: %s", error.orig)
    with force_locale(_locale()):
        message = _(
            "Someone else changed this at the same moment, so nothing was saved. Please try again."
        )
        if is_api_path():
            return json_response({"error": message}, 409)
        page = _page(message, _("Not saved"), collided=True)
        return current_app.response_class(page, 409, mimetype="text/html")


def _page(message: str, title: str, collided: bool = False) -> str:
    """Rendered by Jinja alone: the app's context processors would read the database."""
    template = current_app.jinja_env.get_template("unavailable.html")
    again = request.full_path if request.query_string else request.path
    return template.render(
        message=message,
        title=title,
        locale=_locale(),
        retry=request.method == "GET",
        collided=collided,
        path=again,
    )


def _locale() -> str:
    """The request's language, found without the database: the API caller's, the one chosen
    in this browser, the signed-in account's if it is already loaded, else the browser's."""
    caller = g.get("api_caller")
    if caller is not None:
        return str(caller.locale)
    chosen = request.args.get("lang") or session.get("lang")
    if chosen in LOCALES:
        return str(chosen)
    # Flask-Login keeps the request's user in g; asking current_user would load it.
    account = getattr(g.get("_login_user"), "account", None)
    if account is not None:
        loaded = inspect(account).dict.get("locale")  # what is in memory: no query
        if loaded in LOCALES:
            return str(loaded)
    return request.accept_languages.best_match(LOCALES) or DEFAULT_LOCALE
