"""Tenants on the dashboard, in the real browser: each team signs in and sees its own tasks, named by its
own ids; another team's task page is not found; an admin sees every team's, each marked with its
tenant. Skipped, as the other browser tests, only when /usr/bin/chromium is missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests import test_dashboard_browser as browser
from tests.conftest import Service, make_service
from tests.test_tenants import KEY_A, KEY_ADMIN, KEY_B, TENANTS, bearer, create

page = browser.page  # the browser tests' fixture: a Chromium page that may load loopback URLs only
pytestmark = browser.pytestmark


@pytest.fixture
def shared(env: dict[str, str]) -> Iterator[Service]:
    service, server, _ = make_service(env, **TENANTS)
    yield service
    service.http.close()
    server.stop()


def sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("#credential", key)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{base_url}/")


def sign_out(page: Page) -> None:
    page.click("button:has-text('Log out')")
    expect(page.locator(".flash.ok")).to_have_text("Signed out.")


def test_each_team_sees_its_own_tasks_and_an_admin_sees_all(
    shared: Service, page: Page, simulator: Any
) -> None:
    for key, name in ((KEY_A, "storyboard-7"), (KEY_B, "storyboard-7"), (KEY_B, "teaser-2")):
        assert create(shared, key, name).status_code == 200
    a_task_id = shared.http.get("/v1/tasks/storyboard-7", headers=bearer(KEY_A)).json()["data"]["task_id"]

    sign_in(page, shared.url, KEY_B)
    expect(page.locator(".who")).to_have_text("tenant team-b")
    rows = page.locator("tr.task")
    expect(rows).to_have_count(2)
    expect(rows.locator("a.mono")).to_have_text(["teaser-2", "storyboard-7"])  # its own ids, newest first
    browser.screenshot(page, "10-tenant-b")
    rows.locator("a.mono", has_text="storyboard-7").click()
    expect(page).to_have_url(f"{shared.url}/tasks/storyboard-7")
    expect(page.locator("h1")).to_have_text("storyboard-7")
    page.goto(f"{shared.url}/tasks/{a_task_id}")  # team-a's task, by its Kling task_id
    expect(page.locator("h1")).to_have_text("Not found")
    sign_out(page)

    sign_in(page, shared.url, KEY_ADMIN)
    expect(page.locator(".who")).to_have_text("admin · every tenant")
    expect(page.locator("tr.task")).to_have_count(3)
    marked = page.locator("tr.task .tenant")
    expect(marked).to_have_text(["team-b", "team-b", "team-a"])
    browser.screenshot(page, "11-admin")
    page.locator("tr.task", has_text="team-a").locator("a.mono").click()
    expect(page).to_have_url(f"{shared.url}/tasks/team-a~storyboard-7")
    expect(page.locator("h1 .tenant")).to_have_text("team-a")
