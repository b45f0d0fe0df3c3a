"""Signing in and out, and who the current user is (their positions decide what they see)."""

from __future__ import annotations

import re
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from engine.access import Viewer, viewer_for
from engine.accounts import authenticate, create_account, end_sessions
from engine.errors import Conflict, FormError
from engine.models import Account, Person

from . import MAX_ID, get_session
from .i18n import LOCALES

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
# What the session cookie holds for the signed-in account: "<account id>.<session generation>".
_SESSION_ID = re.compile(r"([0-9]{1,10})\.([0-9]{1,10})")


class User(UserMixin):  # type: ignore[misc]
    def __init__(self, account: Account) -> None:
        self.account = account
        # The cookie is client-side: signed, but replayable. Naming the account's current
        # session generation lets sign-out and a new password end every copy of it.
        self.id = f"{account.id}.{account.session_generation}"

    @property
    def is_active(self) -> bool:
        return bool(self.account.active)


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"


@login_manager.user_loader
def _load(user_id: str) -> User | None:
    match = _SESSION_ID.fullmatch(user_id)
    if match is None or int(match.group(1)) > MAX_ID:
        return None
    account = get_session().get(Account, int(match.group(1)))
    if account is None or not account.active:
        return None
    if account.session_generation != int(match.group(2)):
        return None  # signed out, or the password changed, since this cookie was issued
    return User(account)


@login_manager.unauthorized_handler
def _unauthorized() -> Response:
    if request.blueprint == "api" or request.path.startswith("/api/"):
        abort(401)
    flash(_("Please sign in."), "info")
    return redirect(url_for("auth.login", next=request.full_path))


def current_viewer() -> Viewer:
    """The signed-in user's rights, computed once per request from the positions they hold."""
    if "viewer" not in g:
        if not current_user.is_authenticated:
            abort(401)
        g.viewer = viewer_for(get_session(), current_user.account)
    viewer: Viewer = g.viewer
    return viewer


def admin_required(view: Any) -> Any:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.account.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


class LoginForm(FlaskForm):  # type: ignore[misc]
    login = StringField("login", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=200)])


def _safe_next(target: str | None) -> str:
    # Only local paths: a crafted ?next= must not send people to another site.
    if target and target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("tasks.home")


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response:
    form = LoginForm()
    if form.validate_on_submit():
        account = authenticate(get_session(), form.login.data or "", form.password.data or "")
        if account is None:
            flash(_("Wrong login or password."), "error")
        else:
            session.clear()
            login_user(User(account))
            session.permanent = True
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", form=form)


class RegisterForm(FlaskForm):  # type: ignore[misc]
    name = StringField("name", validators=[DataRequired(), Length(max=100)])
    login = StringField("login", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("password", validators=[DataRequired(), Length(max=200)])
    confirm = PasswordField("confirm", validators=[DataRequired(), Length(max=200)])


@bp.route("/register", methods=["GET", "POST"])
def register() -> str | Response | tuple[str, int]:
    """Applicants sign themselves up; rights come only from positions, so they hold none."""
    form = RegisterForm()
    errors: dict[str, str] = {}
    if form.validate_on_submit():
        if form.password.data != form.confirm.data:
            errors["confirm"] = _("The two passwords differ.")
        else:
            db = get_session()
            person = Person(name=(form.name.data or "").strip())
            db.add(person)
            try:
                account = create_account(
                    db, person, form.login.data or "", form.password.data or "", locale=_locale()
                )
                db.commit()
            except FormError as exc:
                db.rollback()
                errors = dict(exc.errors)
            except Conflict:
                db.rollback()
                errors["login"] = _("This login is taken; choose another.")
            else:
                session.clear()
                login_user(User(account))
                session.permanent = True
                flash(_("Welcome. You can now apply for assistance."), "info")
                return redirect(url_for("assistance.portal"))
    elif form.is_submitted():
        errors = {name: _("This field is required.") for name in form.errors}
    status = 400 if errors else 200
    return render_template("auth/register.html", form=form, errors=errors), status


def _locale() -> str:
    from flask_babel import get_locale

    locale = str(get_locale())
    return locale if locale in LOCALES else "zh_CN"


@bp.post("/logout")
def logout() -> Response:
    if current_user.is_authenticated:
        end_sessions(current_user.account)
        get_session().commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.get("/lang/<code>")
def set_language(code: str) -> Response:
    if code not in LOCALES:
        abort(404)
    session["lang"] = code
    return redirect(_safe_next(request.args.get("next")))
