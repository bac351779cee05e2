"""The Usage page in a real browser (headless Chromium, as in test_dashboard_browser.py): the chart has a
bar for each day with usage and none for the others, under the dashboard's strict CSP, and a tenant's
page shows none of another tenant's numbers. Screenshots go to `test-artifacts/`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests import test_dashboard_browser
from tests.conftest import Service, make_service
from tests.test_usage import (
    KEY_A,
    KEY_ADMIN,
    KEY_B,
    NO_CALLBACKS,
    TENANTS,
    create,
    created_days_ago,
    final_word,
)
from webhook_service.domain.usage import day_of

page = test_dashboard_browser.page  # the loopback-only Chromium page
pytestmark = test_dashboard_browser.pytestmark  # skipped without /usr/bin/chromium


@pytest.fixture
def shared(env: dict[str, str], simulator: Any) -> Iterator[Service]:
    simulator.state.set_default(NO_CALLBACKS)
    service, server, _ = make_service(env, **TENANTS)
    yield service
    service.http.close()
    server.stop()


def sign_in(page: Page, base_url: str, key: str) -> list[str]:
    """Signed in with `key`; the console's errors (a CSP refusal is one) are collected in the list."""
    errors: list[str] = []

    def keep(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", keep)
    page.goto(f"{base_url}/login")
    page.fill("#credential", key)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{base_url}/")
    return errors


def shown_text(page: Page) -> str:
    text = page.locator("main").text_content()
    assert text is not None
    return text


def test_the_chart_has_a_bar_for_each_day_with_usage_and_only_the_tenants_own(
    shared: Service, page: Page
) -> None:
    today_task = create(shared, KEY_A, "fox")
    old_task = create(shared, KEY_A, "owl", model="kling-v1-6")
    other_task = create(shared, KEY_B, "cat")
    earlier = created_days_ago(shared, old_task, 2)
    final_word(shared, today_task, "succeed", "3.5")
    final_word(shared, old_task, "succeed", "1.5")
    final_word(shared, other_task, "succeed", "8.25")
    task = shared.services.store.get(today_task)
    assert task is not None
    today = day_of(task.created_at)

    errors = sign_in(page, shared.url, KEY_A)
    page.click("nav.mainnav >> text=Usage")
    expect(page).to_have_url(f"{shared.url}/usage")
    chart = page.locator("#usage-team-a svg.units-chart")
    bars = chart.locator("g.bar")
    expect(bars).to_have_count(2)
    assert [bars.nth(n).get_attribute("data-day") for n in range(2)] == [
        earlier.isoformat(),
        today.isoformat(),
    ]
    heights = []
    for n, units in enumerate(("1.5", "3.5")):
        box = bars.nth(n).locator("rect.segment").bounding_box()
        assert box is not None and box["height"] > 10, box  # drawn, and tall enough to see
        assert bars.nth(n).get_attribute("data-units") == units
        heights.append(box["height"])
    # Taller for more units: the day of 3.5 units against the day of 1.5.
    assert heights[1] / heights[0] == pytest.approx(3.5 / 1.5, rel=0.02)
    # The numbers on hover: each segment's <title>, which the browser shows as its tooltip.
    hover = bars.nth(1).locator("rect.segment title")
    expect(hover).to_have_text(f"{today} · kling-v2-master: 3.5 units, 1 task (1 succeed)")
    legend = page.locator("#usage-team-a .legend li")
    expect(legend).to_have_count(2)
    expect(legend.nth(0)).to_contain_text("kling-v1-6")
    expect(page.locator('#usage-team-a g.status-row[data-status="succeed"]')).to_have_attribute(
        "data-count", "2"
    )
    fill = page.locator("#usage-team-a rect.segment.series-0").evaluate("r => getComputedStyle(r).fill")
    assert fill == "rgb(52, 81, 199)"  # coloured by the stylesheet: the CSP let it in
    shown = shown_text(page)  # every word on the page, the charts' labels and hover titles included
    assert "3.5 units" in shown and "8.25" not in shown and "team-b" not in shown
    assert errors == []
    test_dashboard_browser.screenshot(page, "usage-tenant")

    page.click("button:has-text('Log out')")
    sign_in(page, shared.url, KEY_B)
    page.goto(f"{shared.url}/usage")
    expect(page.locator("g.bar")).to_have_count(1)
    expect(page.locator("g.bar")).to_have_attribute("data-units", "8.25")
    shown = shown_text(page)
    assert "8.25 units" in shown
    assert "3.5" not in shown and "1.5" not in shown and "kling-v1-6" not in shown and "team-a" not in shown

    page.click("button:has-text('Log out')")
    sign_in(page, shared.url, KEY_ADMIN)
    page.goto(f"{shared.url}/usage")
    expect(page.locator("section.usage")).to_have_count(2)
    expect(page.locator("#usage-team-b g.bar")).to_have_count(1)
    expect(page.locator("#usage-team-a g.bar")).to_have_count(2)
    page.select_option("select[name=tenant]", "team-b")
    page.click("#usage-filters button")
    expect(page.locator("section.usage")).to_have_count(1)
    expect(page.locator("section.usage")).to_have_attribute("data-tenant", "team-b")
    test_dashboard_browser.screenshot(page, "usage-admin")
