"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright, against
the service, real workers, the simulator and a webhook receiver, all on loopback.

Skipped only when /usr/bin/chromium is missing (`scripts/test` installs it in CI). Playwright never
downloads a browser here. Every request the page makes to anything but loopback is refused and fails
the test. Screenshots go to `test-artifacts/`.
"""

from __future__ import annotations

import base64
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from tests.conftest import Service, Workers, make_service
from tests.support import LiveServer, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
KEY = "browser-operator-key-0123456789"
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="chromium is not installed (Debian/Ubuntu: sudo apt-get install chromium)"
)


def gradient_png(width: int = 192, height: int = 108) -> bytes:
    """A small real PNG (a colour gradient), so the request's Base64 image is something to look at."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Receiver:
    """A webhook receiver on loopback: the first `failures` requests to each path get a 500, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[str, str]] = []  # (path, webhook-id)
        self._lock = threading.Lock()
        self._server = LiveServer()
        self.url = self._server.url
        self._server.start(self._app)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        path = environ["PATH_INFO"]
        with self._lock:
            self.requests.append((path, environ.get("HTTP_WEBHOOK_ID", "")))
            seen = sum(1 for p, _ in self.requests if p == path)
        status = "500 Broken" if seen <= self.failures else "200 OK"
        start_response(status, [("Content-Type", "text/plain")])
        return [b"receiver says " + status.encode()]

    def to(self, path: str) -> list[str]:
        with self._lock:
            return [webhook_id for p, webhook_id in self.requests if p == path]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(failures=2)
    yield server
    server.stop()


@pytest.fixture
def system(env: dict[str, str], receiver: Receiver) -> Iterator[Service]:
    """The service (with client credentials) and one worker; each delivery has two tries, 0.2 s apart."""
    service, server, service_env = make_service(
        env,
        SERVICE_API_KEYS=KEY,
        NOTIFY_ALLOWED_HOSTS="127.0.0.1",  # the tasks' callback_url is the loopback receiver
        NOTIFY_RETRY_SCHEDULE_S="0.2",
        ARCHIVE_RETRY_BASE_S="0",
    )
    service.http.headers["Authorization"] = f"Bearer {KEY}"
    workers = Workers(service_env)
    workers.start()
    yield service
    workers.stop()
    server.stop()


def _loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


@pytest.fixture
def page() -> Iterator[Page]:
    """A Chromium page that may load loopback URLs only: anything else is aborted and fails the test."""
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1440, "height": 900})

        def refuse(route: Route) -> None:
            refused.append(route.request.url)
            route.abort()

        context.route(lambda url: not _loopback(url), refuse)
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()
        context.close()
        browser.close()
    assert refused == [], f"the page tried to load non-loopback URLs: {refused}"


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def submit(service: Service, simulator: Any, external_id: str, callback_url: str, steps: list[dict]) -> str:
    image = base64.b64encode(gradient_png()).decode()
    simulator.state.set_scenario(external_id, {"steps": steps})
    response = service.submit(
        {
            "model_name": "kling-v2-master",
            "image": image,
            "prompt": "A paper boat drifts down a rain-soaked street at dusk, neon reflections rippling",
            "mode": "pro",
            "duration": "5",
            "external_task_id": external_id,
            "callback_url": callback_url,
        }
    )
    assert response.status_code == 200, response.text
    return image


def log_in(page: Page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    expect(page).to_have_url(f"{base_url}/login?next=/")
    page.fill("#credential", KEY)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{base_url}/")


def test_operator_follows_a_task_to_its_video_and_replays_its_failed_delivery(
    system: Service, page: Page, simulator, receiver: Receiver
) -> None:
    page.goto(f"{system.url}/")
    page.fill("#credential", "not-the-key")
    page.click("button:has-text('Log in')")
    expect(page.locator(".flash.error")).to_contain_text("not a valid API key")
    screenshot(page, "01-login")
    page.fill("#credential", KEY)
    page.click("button:has-text('Log in')")
    expect(page).to_have_url(f"{system.url}/")

    steps = [{"status": "processing", "delay": 1.0}, {"status": "succeed", "delay": 3.0}]
    image = submit(system, simulator, "boat-1", f"{receiver.url}/boat-1", steps)
    page.reload()
    row = page.locator('tr[data-task="boat-1"]')
    expect(page.locator("body")).to_have_attribute("data-refresh", "2")
    # No reload from here on: the page refreshes itself while the task moves, and then stops.
    expect(row.locator(".status")).to_have_text("processing")
    expect(row.locator(".archive")).to_have_text("archived")
    expect(row.locator(".status")).to_have_text("succeed")
    expect(page.locator("body")).not_to_have_attribute("data-refresh", "2")
    screenshot(page, "02-tasks")

    row.locator("a").first.click()
    expect(page).to_have_url(f"{system.url}/tasks/boat-1")
    shown = page.locator("#request img").first
    expect(shown).to_have_attribute("src", "/tasks/boat-1/inputs/0/thumbnail")  # from the archive
    page.wait_for_function("() => document.querySelector('#request img').complete")
    assert shown.evaluate("img => img.naturalWidth") == 192
    assert image[:40] not in page.locator("body").inner_text()
    video_ready = "v => v.readyState >= 1 && v.duration > 0"  # metadata loaded: it can play
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('#videos video'); return v && ({video_ready})(v) }}"
    )
    timeline = page.locator("#timeline")
    for entry in (
        "Recorded",
        "Create answer: submitted",
        "Callback: processing",
        "Callback: succeed",
        "Archived",
    ):
        expect(timeline).to_contain_text(entry)

    # Two tries, both 500: a dead letter, shown with its attempts once the page has refreshed.
    failed = page.locator('#deliveries tr[data-status="failed"]')
    expect(failed).to_contain_text("task.archived")
    page.locator("#deliveries details summary").first.click()
    expect(page.locator("#deliveries table.attempts")).to_contain_text("receiver says 500 Broken")
    screenshot(page, "03-task")

    first_try = receiver.to("/boat-1")
    failed.locator("button[data-replay]").click()
    expect(page).to_have_url(f"{system.url}/tasks/boat-1")
    expect(page.locator(".flash.ok")).to_contain_text("Replaying task.archived")
    expect(page.locator('#deliveries tr[data-status="delivered"]')).to_be_visible()
    assert len(receiver.to("/boat-1")) == 3 and set(receiver.to("/boat-1")) == set(first_try)
    assert page.evaluate("document.querySelector('#videos video').duration") > 0


def test_operator_replays_dead_letters_since_a_time_sees_the_system_and_logs_out(
    system: Service, page: Page, simulator, receiver: Receiver
) -> None:
    log_in(page, system.url)
    for name in ("crane-1", "crane-2"):
        submit(system, simulator, name, f"{receiver.url}/{name}", [{"status": "succeed", "delay": 0.3}])

    def deliveries() -> list[dict[str, Any]]:
        return system.http.get("/v1/deliveries", params={"status": "failed"}).json()["data"]

    wait_for(lambda: len(deliveries()) == 2, timeout=60, what="two dead letters")

    page.click("nav.mainnav >> text=Deliveries")
    expect(page.locator("#delivery-list tr.delivery")).to_have_count(2)
    system_panel = page.locator("#system")
    expect(system_panel).to_contain_text("1 alive")
    expect(system_panel.locator("meter")).to_have_count(3)  # one per resource pack
    for pack in ("video", "image", "tryon"):
        expect(system_panel.locator(f'[data-pack="{pack}"] meter')).to_have_attribute("max", "5")
    for queue in ("submit", "archive", "notify", "maintenance"):
        expect(system_panel.locator(f'tr[data-queue="{queue}"]')).to_be_visible()
    screenshot(page, "04-deliveries")

    # A form whose CSRF token is gone is refused, and changes nothing.
    page.evaluate("document.querySelector('#replay-since input[name=csrf_token]').remove()")
    page.click("#replay-since button")
    expect(page.locator("h1")).to_have_text("This form cannot be accepted")
    expect(page.locator("main")).to_contain_text("The CSRF token is missing.")
    screenshot(page, "05-csrf-refused")
    assert len(deliveries()) == 2

    page.goto(f"{system.url}/deliveries")
    page.fill("#since", "10m")
    page.click("#replay-since button")
    expect(page.locator(".flash.ok")).to_have_text("Replaying 2 failed deliveries.")
    wait_for(
        lambda: len(receiver.to("/crane-1")) == len(receiver.to("/crane-2")) == 3, what="replays received"
    )
    page.click(".tabs >> text=delivered")
    expect(page.locator("#delivery-list tr.delivery")).to_have_count(2)

    page.click("button:has-text('Log out')")
    expect(page).to_have_url(f"{system.url}/login")
    expect(page.locator(".flash.ok")).to_have_text("Signed out.")
    page.goto(f"{system.url}/deliveries")
    expect(page).to_have_url(f"{system.url}/login?next=/deliveries")
