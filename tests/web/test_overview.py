import pytest

from engine.routing import hand_out
from web import create_app


@pytest.fixture
def client(seeded, engine, database_url):
    app = create_app({"DATABASE_URL": database_url, "TESTING": True})
    # Reuse the test engine (and its schema on PostgreSQL).
    from engine import db

    app.extensions["duban.sessions"] = db.session_factory(engine)
    return app.test_client()


def test_overview_lists_both_plans(client):
    page = client.get("/").get_data(as_text=True)
    assert "维西县关于优化生育政策促进人口长期均衡发展的实施方案" in page
    assert "维发〔2023〕15号" in page


def test_plan_page_shows_units_and_where_items_stand(client, seeded, clock):
    with seeded.begin() as s:
        hand_out(s, "weixi-2023-15", [7], clock())
    page = client.get("/plans/weixi-2023-15").get_data(as_text=True)
    assert "县农业农村局" in page and "签收" in page and "未交办" in page


def test_unknown_plan_is_404(client):
    assert client.get("/plans/nope").status_code == 404
    assert client.get("/healthz").get_json() == {"status": "ok"}
