"""A lip-sync's Base64 audio on the task page, in the real browser: a player that loads the archived
file (the bytes the client sent) and says what it is, where the request showed a JSON reference before;
no Base64 on the page. Skipped, as the other browser tests, only when /usr/bin/chromium is missing."""

from __future__ import annotations

import hashlib
from typing import Any

from playwright.sync_api import Page, expect

from tests import test_dashboard_browser as browser
from tests.conftest import Service
from tests.support import wait_for
from tests.test_inputs import b64
from tests.test_lip_sync import LIP_SYNC, VIDEO_URL, WAV

page = browser.page  # the browser tests' fixture: a Chromium page that may load loopback URLs only
pytestmark = browser.pytestmark


AUDIO = "document.querySelector('#request audio')"
FETCHED = f"""async () => {{
    const answer = await fetch({AUDIO}.src);
    const bytes = (await answer.arrayBuffer()).byteLength;
    return [answer.status, answer.headers.get('content-type'), bytes];
}}"""


def test_a_lip_sync_task_page_plays_its_archived_audio(service: Service, page: Page, simulator: Any) -> None:
    spoken = {"video_url": VIDEO_URL, "mode": "audio2video", "audio_type": "file", "audio_file": b64(WAV)}
    assert (
        service.http.post(LIP_SYNC, json={"input": spoken, "external_task_id": "spoken-1"}).status_code == 200
    )

    page.goto(f"{service.url}/tasks/spoken-1")
    expect(page.locator("#request figure.request-audio audio")).to_have_count(1)
    expect(page.locator("#request dt", has_text="input.audio_file")).to_have_count(1)
    caption = page.locator("#request figure.request-audio figcaption")
    expect(caption).to_contain_text("audio/wav")
    sha256 = hashlib.sha256(WAV).hexdigest()
    expect(caption.locator("span.mono")).to_have_attribute("title", f"sha256 {sha256}")

    page.evaluate(f"{AUDIO}.load()")
    wait_for(lambda: page.evaluate(f"{AUDIO}.readyState") >= 1, what="the browser to read the audio")
    assert 0.5 < page.evaluate(f"{AUDIO}.duration") < 5  # the WAV the client sent, decoded by the browser
    assert page.evaluate(FETCHED) == [200, "audio/wav", len(WAV)]
    assert b64(WAV)[:64] not in page.content()
    assert "archived_input" not in page.locator("#request").inner_text()  # no reference shown as JSON
    browser.screenshot(page, "13-lip-sync-audio")
