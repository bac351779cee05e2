"""A client's image URL on the task page, in the real browser: shown as a link, never loaded. An image
fetched from the client's host would tell whoever runs it who opened the task, and when. The host here
(127.0.0.2) answers nothing and is refused by the browser tests' page anyway: the test watches every
request the browser makes, and every console message (a Content-Security-Policy refusal would mean the
page tried). Skipped, as the other browser tests, only when /usr/bin/chromium is missing."""

from __future__ import annotations

import base64
from typing import Any

from playwright.sync_api import ConsoleMessage, Page, Request, Route, expect

from tests import test_dashboard_browser as browser
from tests.conftest import Service
from tests.support import wait_for

page = browser.page  # the browser tests' fixture: a Chromium page that may load loopback URLs only
pytestmark = browser.pytestmark

THIRD_PARTY = "127.0.0.2:9"  # loopback, yet not this service: nothing may ask it for anything
TAIL = f"http://{THIRD_PARTY}/tail.jpg"
LOADED = "img => img.complete && img.naturalWidth > 0"


def test_a_clients_image_url_is_a_link_the_browser_never_fetches(
    service: Service, page: Page, simulator: Any
) -> None:
    image = base64.b64encode(browser.gradient_png()).decode()
    body = {"image": image, "image_tail": TAIL, "prompt": "a kite", "external_task_id": "links-1"}
    answer = service.submit(body)
    assert answer.status_code == 200, answer.text

    requested: list[str] = []
    complaints: list[str] = []
    page.context.on("request", lambda request: requested.append(request.url))  # popups' too

    def noted(message: ConsoleMessage) -> None:
        complaints.append(message.text)

    page.on("console", noted)
    page.goto(f"{service.url}/tasks/links-1")
    thumbnail = page.locator("#request figure.request-image img")
    thumbnail.scroll_into_view_if_needed()  # lazy: loaded once in view
    wait_for(lambda: thumbnail.evaluate(LOADED), timeout=30, what="the archived image's thumbnail")
    page.wait_for_load_state("networkidle")

    link = page.locator("#request a.request-url")
    expect(link).to_have_attribute("href", TAIL)
    expect(link).to_have_attribute("target", "_blank")
    expect(page.locator(f'img[src*="{THIRD_PARTY}"], [style*="{THIRD_PARTY}"]')).to_have_count(0)
    assert f"{service.url}/tasks/links-1/inputs/0/thumbnail" in requested  # the listener hears the page
    assert not [url for url in requested if THIRD_PARTY in url], requested
    assert not [text for text in complaints if THIRD_PARTY in text], complaints  # no refused attempt

    # A person's click is what takes them there (and the listener would have heard the page ask).
    def answered(route: Route) -> None:
        route.fulfill(status=204)

    page.context.route(f"http://{THIRD_PARTY}/**", answered)  # before the fixture's refusal: the last wins

    def went_there(request: Request) -> bool:
        return request.url == TAIL

    with page.context.expect_event("request", went_there):
        link.click()
