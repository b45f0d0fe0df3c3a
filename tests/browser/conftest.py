"""A real browser on the real app: Debian's Chromium, driven by Playwright, talking to a werkzeug
server started inside the test process on the test database (CSRF on, as in production).

Only 127.0.0.1 is ever contacted: every other request the page makes is refused and fails the
test. Screenshots go to $DUBAN_ARTIFACTS (default var/test-artifacts/). Without Chromium at
CHROMIUM (`make setup` installs it) the tests are skipped, or fail when CI is set."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from flask import Flask, got_request_exception
from playwright.sync_api import Browser, BrowserContext, Response, Route, expect, sync_playwright
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.conftest import ROOT
from tests.web.conftest import PASSWORD, Someone, make_person
from web import create_app

__all__ = ["PASSWORD", "Someone", "make_person"]  # make_person: the fixture, shared with web

CHROMIUM = os.environ.get("DUBAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000  # a step that takes longer is a failure, not something to wait out


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One Chromium for the whole run; each test gets its own context (cookies, viewport)."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}: run `make setup`")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def artifacts(database_url: str) -> Callable[[str], Path]:
    """Where a screenshot named `name` goes; the database is in the name (runs don't clash)."""
    directory = Path(os.environ.get("DUBAN_ARTIFACTS") or ROOT / "var" / "test-artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    return lambda name: directory / f"{backend}-{name}.png"


class _Handler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like production; set here, not on werkzeug's class
    timeout = 10  # an idle keep-alive connection cannot hold the shutdown for long


@dataclass
class LiveServer:
    app: Flask
    url: str
    errors: list[BaseException] = field(default_factory=list)


@pytest.fixture
def live_server(seeded: sessionmaker[Session], tmp_path: Path) -> Iterator[LiveServer]:
    """The app on 127.0.0.1:<free port> in a thread; unhandled exceptions fail the test."""
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "browser-test-secret",
            "WTF_CSRF_ENABLED": True,
            "DUBAN_SESSIONS": seeded,
            "ATTACHMENTS_DIR": str(tmp_path / "attachments"),
        }
    )
    server: BaseWSGIServer = make_server(
        "127.0.0.1", 0, app, threaded=True, request_handler=_Handler
    )
    # Request threads are joined on close, so none still uses the database when it is emptied.
    server.daemon_threads = False  # type: ignore[attr-defined]
    server.block_on_close = True  # type: ignore[attr-defined]
    live = LiveServer(app, f"http://127.0.0.1:{server.server_port}")

    def record(_sender: Flask, exception: BaseException, **_extra: Any) -> None:
        live.errors.append(exception)

    got_request_exception.connect(record, app)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield live
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        got_request_exception.disconnect(record, app)
    assert not live.errors, f"the server failed: {live.errors!r}"


@dataclass
class Contexts:
    """Opens browser contexts on the live server and checks, at the end, what they saw."""

    browser: Browser
    server: LiveServer
    opened: list[BrowserContext] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def open(self, width: int = 1280, height: int = 800, phone: bool = False) -> BrowserContext:
        context = self.browser.new_context(
            base_url=self.server.url,
            viewport={"width": width, "height": height},
            is_mobile=phone,
            has_touch=phone,
            device_scale_factor=2 if phone else 1,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
            reduced_motion="reduce",
            service_workers="block",
        )
        context.set_default_timeout(TIMEOUT_MS)
        context.route("**/*", self._only_local)
        context.on("response", self._check)
        self.opened.append(context)
        return context

    def _only_local(self, route: Route) -> None:
        url: str = route.request.url
        if url == self.server.url or url.startswith(self.server.url + "/"):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("blockedbyclient")

    def _check(self, response: Response) -> None:
        # Every page, stylesheet and download must load; a browser's favicon probe may 404.
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            self.failures.append(f"{response.status} {response.request.method} {response.url}")

    def close(self) -> None:
        for context in self.opened:
            context.close()


@pytest.fixture
def contexts(browser: Browser, live_server: LiveServer) -> Iterator[Contexts]:
    expect.set_options(timeout=TIMEOUT_MS)
    opened = Contexts(browser, live_server)
    try:
        yield opened
    finally:
        opened.close()  # before the server stops: closing drops the keep-alive connections
    assert not opened.refused, f"the page tried to leave 127.0.0.1: {opened.refused}"
    assert not opened.failures, f"requests failed: {opened.failures}"
