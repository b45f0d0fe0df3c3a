"""Sign-in accounts and API tokens. Passwords and tokens are stored only as hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from .direct import Direct
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
    end_sessions(account)  # whoever knew the old password is signed out everywhere


def end_sessions(account: Account) -> None:
    """Every session cookie issued to the account so far stops working (see web.auth)."""
    account.session_generation = (account.session_generation or 0) + 1


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, account: Account, name: str) -> str:
    """A new bearer token; the caller shows it once, duban keeps only its hash."""
    token = "dbn_" + secrets.token_urlsafe(32)
    session.add(ApiToken(account=account, name=name[:100], token_hash=token_digest(token)))
    session.flush()
    return token


@dataclass(frozen=True)
class TokenHolder:
    """The account behind a bearer token, read in one statement."""

    token_id: int
    id: int  # the account's
    person_id: int
    name: str
    is_admin: bool
    locale: str
    last_used_at: datetime | None

    def use_is_stale(self, now: datetime) -> bool:
        """Use is recorded to the minute: a write on every API call would cost more than it."""
        return self.last_used_at is None or now - self.last_used_at >= TOKEN_USE_RESOLUTION


def token_usable() -> tuple[ColumnElement[bool], ...]:
    """Where a bearer token (`digest` bound) is usable: not revoked, its account active."""
    return (
        ApiToken.token_hash == bindparam("digest"),
        ApiToken.revoked_at.is_(None),
        Account.active.is_(True),
    )


# Built once: every API request runs it.
TOKEN_HOLDER = Direct(
    select(
        ApiToken.id.label("token_id"),
        Account.id,
        Account.person_id,
        Person.name,
        Account.is_admin,
        Account.locale,
        ApiToken.last_used_at,
    )
    .join(Account, Account.id == ApiToken.account_id)
    .join(Person, Person.id == Account.person_id)
    .where(*token_usable())
)


def record_token_use(session: Session, token_id: int, now: datetime) -> None:
    session.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
