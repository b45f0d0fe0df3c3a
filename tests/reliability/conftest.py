"""The web app fixtures of tests/web, for the reliability tests that go through it."""

from tests.web.conftest import app, client, make_person  # noqa: F401
