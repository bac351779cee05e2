"""Dashboard sessions in the real browser: a session cookie copied into another browser stops working
when its owner signs out, and a login form under guessing answers with a page that says why and when
to try again. Skipped, as the other browser tests, only when /usr/bin/chromium is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route, expect

from tests import test_dashboard_browser as browser
from tests.conftest import Service, make_service
from tests.test_tenants_browser import sign_in, sign_out
from webhook_service.web import auth_limit

page = browser.page  # the browser tests' fixture: a Chromium page that may load loopback URLs only
pytestmark = browser.pytestmark
KEY = "session-browser-key-0123456789abcdef"


@pytest.fixture
def locked(env: dict[str, str]) -> Iterator[Service]:
    service, server, _ = make_service(env, SERVICE_API_KEYS=KEY)
    yield service
    service.http.close()
    server.stop()


def test_a_cookie_copied_into_another_browser_dies_with_its_sign_out(locked: Service, page: Page) -> None:
    sign_in(page, locked.url, KEY)
    stolen = page.context.cookies()
    assert [cookie["name"] for cookie in stolen] == ["kws_session"]

    assert page.context.browser is not None
    other = page.context.browser.new_context()
    other.route(lambda url: not url.startswith(locked.url), lambda route: _refuse(route))
    other.add_cookies(stolen)
    thief = other.new_page()
    thief.goto(f"{locked.url}/")
    expect(thief).to_have_url(f"{locked.url}/")  # the copy works while the session lives
    expect(thief.locator("button:has-text('Log out')")).to_be_visible()

    sign_out(page)
    thief.goto(f"{locked.url}/deliveries")
    expect(thief).to_have_url(f"{locked.url}/login?next=/deliveries")
    expect(thief.locator("#credential")).to_be_visible()
    other.close()


def _refuse(route: Route) -> None:
    route.abort()


def test_a_guessed_login_form_answers_429_with_a_page_saying_when_to_try_again(
    locked: Service, page: Page
) -> None:
    page.goto(f"{locked.url}/login")
    for _ in range(auth_limit.MAX_FAILURES):
        page.fill("#credential", "a wrong guess of the key")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("button:has-text('Log in')")
        assert answer.value.status == 401

    page.fill("#credential", KEY)  # even the right key, now: a guess must not learn it was right
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("button:has-text('Log in')")
    assert answer.value.status == 429 and 1 <= int(answer.value.headers["retry-after"]) <= 60
    expect(page.get_by_text("Too many failed sign-ins from this address")).to_be_visible()
    expect(page.locator("#credential")).to_be_visible()  # the form stays, for later
    browser.screenshot(page, "12-login-limited")
