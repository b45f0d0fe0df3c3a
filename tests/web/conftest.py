"""A web app on the test database, and people to sign in as."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from engine.accounts import create_account, issue_token
from engine.directory import find_unit, hand_over, position_of
from engine.models import Person
from web import create_app

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Someone:
    login: str
    person_id: int
    position_id: int | None
    token: str


@pytest.fixture
def app(seeded: sessionmaker[Session], tmp_path) -> Flask:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "DUBAN_SESSIONS": seeded,
            "ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        }
    )


@pytest.fixture
def make_person(seeded: sessionmaker[Session], clock) -> Callable[..., Someone]:
    """A person holding `position` of `unit` (none when unit is None), with an account."""

    def make(
        login: str, unit: str | None = None, position: str = "liaison", admin: bool = False
    ) -> Someone:
        with seeded.begin() as s:
            person = Person(name=login)
            s.add(person)
            s.flush()
            position_id = None
            if unit is not None:
                seat = position_of(s, find_unit(s, unit), position)
                hand_over(s, seat, person, clock())
                position_id = seat.id
            account = create_account(s, person, login, PASSWORD, is_admin=admin)
            token = issue_token(s, account, "tests")
            return Someone(login, person.id, position_id, token)

    return make


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser without CSRF tokens: tests of CSRF itself use `app` with it switched on."""
    app.config["WTF_CSRF_ENABLED"] = False
    return app.test_client()


def sign_in(client: FlaskClient, who: Someone) -> FlaskClient:
    response = client.post("/login", data={"login": who.login, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client
