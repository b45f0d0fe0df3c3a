"""Sign-in accounts and API tokens. Passwords and tokens are stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .errors import Conflict, FormError
from .models import Account, ApiToken, Person

MIN_PASSWORD = 8
TOKEN_USE_RESOLUTION = timedelta(minutes=1)
# Checked against when a login is unknown, so both paths cost one hash check.
_DUMMY_HASH = generate_password_hash("duban-timing-equaliser")


def create_account(
    session: Session,
    person: Person,
    login: str,
    password: str,
    is_admin: bool = False,
    locale: str = "zh_CN",
    password_hash: str | None = None,
) -> Account:
    """`password_hash` lets a caller creating many accounts with one password hash it once."""
    login = login.strip()
    errors = {}
    if not login or len(login) > 64 or not login.isprintable():
        errors["login"] = "must be 1 to 64 printable characters"
    if len(password) < MIN_PASSWORD:
        errors["password"] = f"must be at least {MIN_PASSWORD} characters"
    if errors:
        raise FormError(errors)
    if session.scalar(select(Account.id).where(Account.login == login)) is not None:
        raise Conflict(f"login '{login}' is taken")
    account = Account(
        person=person,
        login=login,
        password_hash=password_hash or generate_password_hash(password),
        is_admin=is_admin,
        locale=locale,
    )
    session.add(account)
    session.flush()
    return account


def authenticate(session: Session, login: str, password: str) -> Account | None:
    account = session.scalar(select(Account).where(Account.login == login.strip()))
    if account is None:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not account.active or not check_password_hash(account.password_hash, password):
        return None
    return account


def set_password(account: Account, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise FormError({"password": f"must be at least {MIN_PASSWORD} characters"})
    account.password_hash = generate_password_hash(password)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, account: Account, name: str) -> str:
    """A new bearer token; the caller shows it once, duban keeps only its hash."""
    token = "dbn_" + secrets.token_urlsafe(32)
    session.add(ApiToken(account=account, name=name[:100], token_hash=_digest(token)))
    session.flush()
    return token


def account_for_token(session: Session, token: str, now: datetime) -> Account | None:
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == _digest(token), ApiToken.revoked_at.is_(None))
    )
    if row is None or not row.account.active:
        return None
    # Record use to the minute: a write on every API call would cost more than the call.
    last = row.last_used_at
    if last is None or now - last >= TOKEN_USE_RESOLUTION:
        row.last_used_at = now
    return row.account
