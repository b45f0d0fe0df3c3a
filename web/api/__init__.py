"""The JSON API under /api/v1: the liaison's operations for other programs, with bearer tokens.

Rights are the HTML screens' rights (engine.access), computed from the positions the token's
person holds right now. A step or item the caller may not see answers 404, as if it did not
exist. Every error is JSON: {"error": "...", "errors": {field: message}?}."""

from __future__ import annotations

from flask import Flask

from .common import bp


def init_app(app: Flask) -> None:
    from web import csrf

    from . import errors, views  # noqa: F401 (their routes and handlers register on `bp`)

    csrf.exempt(bp)  # a bearer token is not sent by browsers on their own: no CSRF to fear
    errors.init_app(app)
    app.register_blueprint(bp)


__all__ = ["bp", "init_app"]
