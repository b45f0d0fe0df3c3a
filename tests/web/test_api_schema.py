"""Property-based tests of the JSON API against its own OpenAPI document (schemathesis, in
process over WSGI): every operation, with a valid token, on a seeded world with a few items
handed out. No answer may be a 5xx, and every answer must be documented: status code, media
type and body schema. Bounded and derandomized, so a run is reproducible and quick."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

schemathesis = pytest.importorskip("schemathesis", reason="the test extras' schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.directory import find_unit, hand_over, position_of  # noqa: E402
from engine.models import Attachment, HumanTask, Instance, Person  # noqa: E402
from engine.routing import hand_out  # noqa: E402
from tests.helpers import act, open_steps  # noqa: E402
from web.api.openapi import document  # noqa: E402

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
PDF = b"%PDF-1.4\n%%EOF\n"
SMALL_IDS = 64


@dataclass(frozen=True)
class World:
    token: str
    ids: dict[str, list[int]]


def _seat_both(seeded, person_id: int, clock) -> None:
    """The caller is 县卫生健康局's liaison as well as the office director: they see every item
    of the county and may act on some of its steps."""
    with seeded.begin() as s:
        unit = find_unit(s, "县卫生健康局")
        hand_over(s, position_of(s, unit, "liaison"), s.get(Person, person_id), clock())


def _hand_out_a_few(seeded, clock) -> list[int]:
    with seeded.begin() as s:
        roots = [i.id for i in hand_out(s, "weixi-2023-15", [2, 7, 12], clock())]
    with seeded() as s:
        first_acks = open_steps(s, roots[1])
    act(seeded, first_acks[0], clock)  # one step completed: history, form data, done list
    return roots


def _closing(wsgi_app: Any) -> Any:
    """Read each response whole and close it: schemathesis's WSGI transport leaves a streamed
    response (an attachment's open file) unclosed, which pytest reports as a ResourceWarning."""

    def run(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = wsgi_app(environ, start_response)
        try:
            return [b"".join(body)]
        finally:
            if hasattr(body, "close"):
                body.close()

    return run


@pytest.fixture
def world(app: Flask, seeded, make_person, clock) -> World:
    app.wsgi_app = _closing(app.wsgi_app)  # type: ignore[method-assign]
    office = make_person("office", "县卫生健康局", "office_director")
    _seat_both(seeded, office.person_id, clock)
    roots = _hand_out_a_few(seeded, clock)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {office.token}"}
    with seeded() as s:
        mine = next(t for t in open_steps(s, roots[0]) if t.unit.name == "县卫生健康局")
    client.post(f"/api/v1/tasks/{mine.id}/comments", json={"body": "已阅"}, headers=auth)
    uploaded = client.post(
        f"/api/v1/tasks/{mine.id}/attachments",
        data={"file": (io.BytesIO(PDF), "evidence.pdf")},
        headers=auth,
    )
    assert uploaded.status_code == 201, uploaded.get_json()
    with seeded() as s:
        ids = {
            "task_id": list(s.scalars(select(HumanTask.id))),
            "root_id": list(s.scalars(select(Instance.id).where(Instance.parent_id.is_(None)))),
            "attachment_id": list(s.scalars(select(Attachment.id))),
        }
    for name, found in ids.items():  # what the id hook below relies on
        assert found and min(found) <= SMALL_IDS, (name, found)
    return World(office.token, ids)


def _small_ids(context: Any, parameters: dict[str, Any] | None) -> Any:
    """Half the time an id up to SMALL_IDS: each test's database starts its ids from 1, so
    these exist (see `world`); random integers alone would almost never name a row."""
    if not parameters:
        return st.just(parameters)
    chosen: dict[str, Any] = {}
    for name, value in parameters.items():
        if isinstance(value, int) and not isinstance(value, bool):
            chosen[name] = st.one_of(st.integers(1, SMALL_IDS), st.just(value))
        else:
            chosen[name] = st.just(value)
    return st.fixed_dictionaries(chosen)


# The document is static: load it once, here, and send the requests to each test's own app.
schema = schemathesis.openapi.from_dict(document())
schema.hook("flatmap_path_parameters")(_small_ids)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    # One world per operation, shared by its examples on purpose: state moves on as they run.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_every_operation_answers_as_documented(case: Any, app: Flask, world: World) -> None:
    case.call_and_validate(
        app=app, headers={"Authorization": f"Bearer {world.token}"}, checks=CHECKS
    )


def test_the_document_describes_every_route_of_the_api(app: Flask) -> None:
    routes = {
        (method, re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    described = {
        (method.upper(), path) for path, item in document()["paths"].items() for method in item
    }
    assert routes == described
