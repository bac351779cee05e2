"""The Endpoints page in a real browser (headless Chromium, as tests/test_dashboard_browser.py drives it):
a tenant's endpoints with their last 24 hours as a chart, their last attempts, and the forms to disable
and enable one, rotate its secret (shown once) and send it a test event; another tenant sees none of it."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect
from standardwebhooks import Webhook

from tests import test_dashboard_browser, test_notify
from tests.conftest import Service
from tests.support import wait_for
from tests.test_dashboard_browser import CHROMIUM, screenshot
from tests.test_endpoints import KEY_A, KEY_B, TENANTS, bearer, register, submit_as
from tests.test_notify import Answer, Receiver, Stack, webhooks

page = test_dashboard_browser.page  # Chromium, loopback only
receiver, stack = test_notify.receiver, test_notify.stack
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed")


@pytest.fixture
def system(stack: Stack) -> Service:
    return stack.start(1, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1"))


def sign_in(page: Page, service: Service, key: str) -> None:
    page.goto(f"{service.url}/endpoints")
    page.fill("#credential", key)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{service.url}/endpoints")


def test_a_tenant_manages_its_endpoints_on_the_dashboard(
    system: Service, page: Page, simulator: Any, receiver: Receiver
) -> None:
    url = receiver.script("/hook", Answer(500))  # the first event fails once, then is delivered
    created = register(system, url, event_types=["task.submitted"], description="render pipeline")
    ep = created["id"]
    submit_as(system, simulator, KEY_A, "team-a", "job-1")
    wait_for(lambda: len(receiver.received("/hook")) == 2, timeout=30, what="two attempts")

    sign_in(page, system, KEY_A)
    card = page.locator(f"#endpoint-{ep}")
    expect(card).to_contain_text("render pipeline")
    expect(card.locator(".success-rate")).to_have_text("50%")  # one attempt of two delivered
    expect(card.locator("svg.endpoint-chart g.bar")).to_have_count(1)  # this hour's column
    expect(card.locator("tr.attempt")).to_have_count(2)
    expect(card.locator('tr.attempt[data-verdict="delivered"]')).to_contain_text("task.submitted")
    screenshot(page, "endpoints-01")

    card.locator('button[data-action="disable"]').click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Endpoint {ep} disabled.")
    expect(card).to_have_attribute("data-enabled", "no")
    assert system.http.get(f"/v1/endpoints/{ep}", headers=bearer(KEY_A)).json()["data"]["enabled"] is False
    card.locator('button[data-action="enable"]').click()
    expect(card).to_have_attribute("data-enabled", "yes")

    card.locator('button[data-action="rotate"]').click()
    secret = page.locator(f'#new-secret code.secret[data-endpoint="{ep}"]')
    new = secret.inner_text()
    assert new.startswith("whsec_") and new != created["secret"]
    screenshot(page, "endpoints-02-rotated")
    page.goto(f"{system.url}/endpoints")
    expect(page.locator("#new-secret")).to_have_count(0)  # shown once
    assert new not in page.content()

    page.locator(f'#endpoint-{ep} button[data-action="test"]').click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Test event to {ep}: HTTP 200")
    ping = receiver.received("/hook")[-1]
    assert Webhook(new).verify(ping.body, ping.headers)["type"] == "ping"
    Webhook(created["secret"]).verify(ping.body, ping.headers)  # the old one signs too, for a day
    expect(page.locator(f"#endpoint-{ep} tr.attempt").first).to_contain_text("ping")

    # A form without its CSRF token is refused and changes nothing.
    page.evaluate(f"document.querySelector('#endpoint-{ep} form input[name=csrf_token]').remove()")
    page.locator(f'#endpoint-{ep} button[data-action="disable"]').click()
    expect(page.locator("h1")).to_have_text("This form cannot be accepted")
    assert system.http.get(f"/v1/endpoints/{ep}", headers=bearer(KEY_A)).json()["data"]["enabled"] is True

    # Another tenant sees none of it, and cannot act on it.
    page.click("button:has-text('Log out')")
    sign_in(page, system, KEY_B)
    expect(page.locator("#no-endpoints")).to_be_visible()
    assert ep not in page.content()
    page.click("nav.mainnav >> text=Endpoints")
    expect(page.locator("nav.mainnav a[aria-current=page]")).to_have_text("Endpoints")
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(
        f"{system.url}/endpoints/{ep}/enabled", form={"csrf_token": token, "enabled": "0"}
    )
    assert answer.ok and f"There is no endpoint {ep}." in answer.text()
    assert system.http.get(f"/v1/endpoints/{ep}", headers=bearer(KEY_A)).json()["data"]["enabled"] is True
