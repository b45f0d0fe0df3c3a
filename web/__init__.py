"""duban's web application (Flask app factory). A thin layer over the engine."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, g
from sqlalchemy.orm import Session

from engine import db


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("DUBAN_DATABASE_URL", db.DEFAULT_URL),
    )
    if config:
        app.config.update(config)
    engine = db.make_engine(app.config["DATABASE_URL"])
    app.extensions["duban.sessions"] = db.session_factory(engine)

    @app.teardown_appcontext
    def _close_session(_exc: BaseException | None) -> None:
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    from .overview import bp as overview_bp

    app.register_blueprint(overview_bp)
    return app


def get_session() -> Session:
    """The request's session; routes commit with `with session.begin()` around a change."""
    if "db_session" not in g:
        from flask import current_app

        g.db_session = current_app.extensions["duban.sessions"]()
    session: Session = g.db_session
    return session
