"""Every role against every screen that shows or changes an item: who gets what status."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from engine.items import add_attachment
from engine.models import Attachment, Instance
from engine.routing import hand_out
from tests.helpers import open_steps
from tests.web.conftest import sign_in

PDF = b"%PDF-1.4\n%%EOF\n"

# role: (login, unit, position); None means no seat at all.
ROLES = {
    "liaison": ("农业联络员", "县农业农村局", "liaison"),
    "other_liaison": ("财政联络员", "县财政局", "liaison"),
    "head": ("农业局长", "县农业农村局", "head"),
    "other_head": ("财政局长", "县财政局", "head"),
    "office": ("办公室主任", "县卫生健康局", "office_director"),
    "other_office": ("州办主任", "州卫生健康委", "office_director"),
    "admin": ("管理员", None, "liaison"),
}
# The step belongs to 县农业农村局's liaison; the item is Weixi's.
EXPECTED = {
    #                view  act  comment download plan
    "liaison":       (200, 302, 302, 200, 404),
    "other_liaison": (404, 404, 404, 404, 404),
    "head":          (200, 403, 302, 200, 404),
    "other_head":    (404, 404, 404, 404, 404),
    "office":        (200, 403, 302, 200, 200),
    "other_office":  (404, 404, 404, 404, 404),
    "admin":         (404, 404, 404, 404, 404),
    "anonymous":     (302, 302, 302, 302, 302),
}  # fmt: skip


@pytest.fixture
def world(seeded, clock, tmp_path, app):
    with seeded.begin() as s:
        (item,) = hand_out(s, "weixi-2023-15", [7], clock())
        step = next(t for t in open_steps(s, item.id) if t.unit.name == "县农业农村局")
        root = s.get(Instance, item.id)
        add_attachment(
            s,
            app.extensions["duban.attachments"],
            root,
            1,
            step.position_id,
            "证明.pdf",
            io.BytesIO(PDF),
            clock(),
            step,
        )
        attachment = s.scalar(select(Attachment.id))
    return step.id, attachment


@pytest.mark.parametrize("role", sorted(EXPECTED))
def test_role_against_every_item_endpoint(role, app, client, make_person, world):
    step_id, attachment_id = world
    if role != "anonymous":
        login, unit, position = ROLES[role]
        sign_in(client, make_person(login, unit, position, admin=role == "admin"))
    got = []
    for method, url, data in [
        ("get", f"/tasks/{step_id}", None),
        ("post", f"/tasks/{step_id}", {"note": "收到"}),
        ("post", f"/tasks/{step_id}/comments", {"body": "意见"}),
        ("get", f"/attachments/{attachment_id}", None),
        ("get", "/plans/weixi-2023-15", None),
    ]:
        response = getattr(client, method)(url, data=data)
        got.append(response.status_code)
        response.close()
    assert tuple(got) == EXPECTED[role]
