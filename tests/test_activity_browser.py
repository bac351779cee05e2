"""The Tasks page's activity panel in a real browser (headless Chromium, as in test_dashboard_browser.py):
the bars for the hour whose tasks finished and whose deliveries were attempted, drawn under the
dashboard's strict CSP, only the tenant's own numbers, the sum for an admin; and the top navigation's
link to the API docs. Screenshots go to `test-artifacts/`."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import test_dashboard_browser, test_usage_browser
from tests.conftest import Service
from tests.test_activity import attempt, delivery
from tests.test_usage import KEY_A, KEY_ADMIN, KEY_B, create, final_word, refused
from tests.test_usage_browser import shown_text, sign_in
from webhook_service.domain.activity import hour_of
from webhook_service.domain.clock import now_ms
from webhook_service.notify.records import DeliveryStatus

page = test_dashboard_browser.page  # the loopback-only Chromium page
shared = test_usage_browser.shared  # two tenants and an admin, behind a live server
pytestmark = test_dashboard_browser.pytestmark  # skipped without /usr/bin/chromium


def bar_totals(page: Page, chart: str, total: str) -> dict[str, int]:
    """Each bar of the chart, by its hour: the total it carries."""
    bars = page.locator(f"#activity svg.{chart} g.bar")
    return {
        str(bars.nth(n).get_attribute("data-hour")): int(bars.nth(n).get_attribute(f"data-{total}") or 0)
        for n in range(bars.count())
    }


def test_the_tasks_page_charts_the_last_hours_of_the_tenants_own_tasks_and_deliveries(
    shared: Service, page: Page, simulator: Any
) -> None:
    started = now_ms()
    tasks = [create(shared, KEY_A, name) for name in ("fox", "owl", "cat")]
    final_word(shared, tasks[0], "succeed", "1")
    final_word(shared, tasks[1], "succeed", "1")
    final_word(shared, tasks[2], "failed", "0")
    refused(shared, simulator, KEY_A, "bad")
    final_word(shared, create(shared, KEY_B, "other"), "succeed", "1")
    attempt(shared, delivery(shared, "team-a", "fox"), DeliveryStatus.DELIVERED)
    attempt(shared, delivery(shared, "team-a", "owl"), DeliveryStatus.DELIVERED)
    attempt(shared, delivery(shared, "team-a", "cat"), DeliveryStatus.FAILED)
    attempt(shared, delivery(shared, "team-b", "other"), DeliveryStatus.FAILED)
    hours = {hour_of(at).strftime("%Y-%m-%dT%H:00Z") for at in (started, now_ms())}

    errors = sign_in(page, shared.url, KEY_A)
    expect(page.locator("#activity svg.tasks-chart g.bar").first).to_be_visible()
    by_hour = bar_totals(page, "tasks-chart", "tasks")
    assert set(by_hour) <= hours and sum(by_hour.values()) == 4  # the hour that has tasks, and no other
    bar = page.locator("#activity svg.tasks-chart g.bar").last
    succeed = bar.locator("rect.status-fill-succeed").bounding_box()
    failed = bar.locator("rect.status-fill-failed").bounding_box()
    if len(by_hour) == 1:  # all in one hour (the test did not straddle the hour's end)
        assert succeed is not None and failed is not None and failed["height"] > 5, failed
        assert succeed["height"] / failed["height"] == pytest.approx(2, rel=0.05)  # two succeed, one failed
        # The numbers on hover: each segment's <title>, which the browser shows as its tooltip.
        hover = bar.locator("rect.status-fill-rejected title")
        expect(hover).to_have_text(re.compile(r"\d\d:00 to \d\d:00 UTC · 1 rejected"))
    fill = page.locator("#activity rect.status-fill-succeed").first.evaluate("r => getComputedStyle(r).fill")
    assert fill == "rgb(21, 127, 59)"  # coloured by the stylesheet: the CSP let it in
    sent = bar_totals(page, "deliveries-chart", "attempts")
    assert set(sent) <= hours and sum(sent.values()) == 3
    expect(page.locator("#activity .total").nth(1)).to_have_text("67% of 3 attempts delivered")
    shown = shown_text(page)
    assert "team-b" not in shown and "4 tasks reached a final status" in shown
    test_dashboard_browser.screenshot(page, "activity-tenant")

    docs = page.locator("nav.mainnav a", has_text="API docs")
    expect(docs).to_have_attribute("href", "/docs")
    docs.click()
    expect(page).to_have_url(f"{shared.url}/docs")
    page.go_back()
    expect(page).to_have_url(f"{shared.url}/")
    assert errors == []

    page.click("button:has-text('Log out')")
    sign_in(page, shared.url, KEY_ADMIN)
    assert sum(bar_totals(page, "tasks-chart", "tasks").values()) == 5  # both tenants' tasks
    assert sum(bar_totals(page, "deliveries-chart", "attempts").values()) == 4
    expect(page.locator("#activity .total").nth(1)).to_have_text("50% of 4 attempts delivered")
    test_dashboard_browser.screenshot(page, "activity-admin")


def test_the_panel_says_so_when_nothing_happened(shared: Service, page: Page) -> None:
    errors = sign_in(page, shared.url, KEY_B)
    expect(page.locator("#activity g.bar")).to_have_count(0)
    expect(page.locator("#activity .total").first).to_have_text("0 tasks reached a final status")
    expect(page.locator("#activity .total").nth(1)).to_have_text("No delivery attempts")
    assert errors == []
