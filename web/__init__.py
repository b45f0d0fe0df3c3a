"""duban's web application: a thin Flask layer over the engine (app factory)."""

from __future__ import annotations

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, abort, g
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session

from engine import db
from engine.items import MAX_ATTACHMENT_BYTES, AttachmentStore

csrf = CSRFProtect()
MAX_ID = 2**31 - 1  # ids are 32-bit on every backend: anything larger names nothing


def _ids_in_range(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """An id in an address past the 32-bit range names nothing: 404, where the database driver
    would overflow (a 500). The API checks its own ids, with its own messages."""
    if (endpoint or "").startswith("api.") or not values:
        return
    if any(isinstance(v, int) and v > MAX_ID for v in values.values()):
        abort(404)


def form_int(text: str, highest: int = MAX_ID) -> int | None:
    """A whole number from a form or a query string, or None. Only ASCII digits: str.isdigit()
    also accepts '²', which int() refuses, and numbers of any length."""
    if not re.fullmatch(r"[0-9]{1,10}", text):
        return None
    value = int(text)
    return value if value <= highest else None


def _secret_key(var_dir: Path) -> str:
    """DUBAN_SECRET_KEY in production; the embedded default keeps one in var/ (mode 0600)."""
    if os.environ.get("DUBAN_SECRET_KEY"):
        return os.environ["DUBAN_SECRET_KEY"]
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.url_value_preprocessor(_ids_in_range)
    var_dir = Path(os.environ.get("DUBAN_VAR", "var"))
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("DUBAN_DATABASE_URL", db.DEFAULT_URL),
        ATTACHMENTS_DIR=os.environ.get("DUBAN_ATTACHMENTS", str(var_dir / "attachments")),
        MAX_CONTENT_LENGTH=MAX_ATTACHMENT_BYTES + 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=os.environ.get("DUBAN_SECURE_COOKIES", "") == "1",
        REMEMBER_COOKIE_HTTPONLY=True,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        WTF_CSRF_TIME_LIMIT=None,
    )
    if config:
        app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(var_dir)
    if "DUBAN_SESSIONS" in app.config:  # tests hand over their own engine and schema
        app.extensions["duban.sessions"] = app.config["DUBAN_SESSIONS"]
    else:
        app.extensions["duban.sessions"] = db.session_factory(
            db.make_engine(app.config["DATABASE_URL"])
        )
    app.extensions["duban.attachments"] = AttachmentStore(Path(app.config["ATTACHMENTS_DIR"]))

    from . import auth, i18n, unavailable, views

    i18n.init_app(app)
    csrf.init_app(app)
    auth.init_app(app)
    views.init_app(app)
    unavailable.init_app(app)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    from . import admin, api, assistance, dashboard, meetings, notices
    from .overview import bp as overview_bp
    from .tasks import bp as tasks_bp

    app.register_blueprint(auth.bp)
    app.register_blueprint(tasks_bp)
    app.register_blueprint(overview_bp)
    admin.init_app(app)
    assistance.init_app(app)
    meetings.init_app(app)
    notices.init_app(app)
    dashboard.init_app(app)
    api.init_app(app)
    return app


def get_session() -> Session:
    """The request's session. A route that changes something commits once after the engine
    call (one transaction per change) and rolls back on any error."""
    if "db_session" not in g:
        from flask import current_app

        g.db_session = current_app.extensions["duban.sessions"]()
    session: Session = g.db_session
    return session
