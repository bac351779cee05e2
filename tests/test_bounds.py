"""Everything the service stores has a ceiling, whatever a client or a callback sends: bodies in a task's
history, outputs per callback, status messages, events' copies of the history, the request body."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from http.client import HTTPResponse
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Service, make_service
from tests.support import wait_for
from tests.test_inputs import stored_request
from webhook_service.domain import unified_rules
from webhook_service.domain.body_limits import V1_CREATE, base64_chars
from webhook_service.domain.bounds import STORED_BODY_MAX_BYTES, stored_body
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.domain.reconcile import reconcile
from webhook_service.domain.tasks import STATUS_MSG_MAX_CHARS
from webhook_service.domain.unified_rules import IMAGE_TO_VIDEO_PATH, TEXT_TO_VIDEO_PATH
from webhook_service.notify.payload import EVENT_HISTORY_ENTRIES, build_event

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}
QUIET = {"steps": [{"status": "succeed", "delay": 0, "send": False}]}  # Kling says nothing unasked


def post_callback(service: Service, external_id: str, body: dict[str, Any] | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = callback_url_for(service.services.settings, external_id)
    return httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=30)


def quiet_task(service: Service, simulator, external_id: str) -> str:
    """A submitted task whose upstream sends no callbacks; returns Kling's task_id."""
    simulator.state.set_scenario(external_id, QUIET)
    assert service.submit({**IMAGE, "external_task_id": external_id}).status_code == 200
    return service.task(external_id)["task_id"]


def last_status_entry(service: Service, external_id: str) -> dict[str, Any]:
    return [h for h in service.services.store.history(external_id) if h["event"] == "status"][-1]


def test_a_callback_body_is_kept_whole_up_to_16_kib_then_cut_down_still_json(
    service: Service, simulator
) -> None:
    task_id = quiet_task(service, simulator, "padded")
    small = {"task_id": task_id, "task_status": "processing", "note": "x" * 1000}
    assert post_callback(service, "padded", small).status_code == 200
    assert last_status_entry(service, "padded")["body"] == small

    padding = [{"n": n, "filler": "y" * 90} for n in range(8000)]  # 0.9 MB, under the 1 MiB callback limit
    big = {"task_id": task_id, "task_status": "failed", "task_status_msg": "m" * 5000, "padding": padding}
    assert post_callback(service, "padded", big).status_code == 200

    entry = last_status_entry(service, "padded")
    whole = json.dumps(big, separators=(",", ":")).encode()
    assert entry["body_truncated"] is True and entry["body_size"] == len(whole)
    assert entry["body_sha256"] == hashlib.sha256(whole).hexdigest()
    kept = entry["body"]
    assert len(json.dumps(kept)) <= STORED_BODY_MAX_BYTES
    assert kept["task_id"] == task_id and kept["task_status"] == "failed"  # the small members survive
    assert kept["padding"][:3] == padding[:3]  # a list keeps its first items
    history_key = service.services.keys.task_history("padded")
    assert service.services.redis.memory_usage(history_key, samples=0) < 3 * STORED_BODY_MAX_BYTES

    task = service.task("padded")
    assert task["task_status"] == "failed"
    assert task["task_status_msg"] == "m" * STATUS_MSG_MAX_CHARS + "…"  # the task keeps a sentence, not 5 KB


def test_a_5_mb_callback_is_refused_naming_the_limit_and_changes_nothing(service: Service, simulator) -> None:
    task_id = quiet_task(service, simulator, "flood")
    before = service.services.store.history("flood")

    refused = post_callback(
        service, "flood", {"task_id": task_id, "task_status": "succeed", "x": "z" * 5_000_000}
    )

    assert refused.status_code == 413 and "1,048,576 bytes" in refused.json()["message"]
    assert service.services.store.history("flood") == before
    assert service.task("flood")["task_status"] == "submitted"


def post_chunked(url: str, body: bytes) -> HTTPResponse:
    """A POST sent chunked: no Content-Length, so the server learns the size only by reading."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=60)
    chunks = (body[at : at + 65536] for at in range(0, len(body), 65536))
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    connection.request(
        "POST", target, body=chunks, headers={"Content-Type": "application/json"}, encode_chunked=True
    )
    return connection.getresponse()


def test_a_body_sent_chunked_over_its_limit_is_refused_not_cut_short(service: Service, simulator) -> None:
    """Werkzeug reads a chunked body up to the limit and stops without a word: judged on its first
    megabyte, a 2 MiB create was a 400 "not valid JSON", a callback would be too."""
    over = json.dumps({"prompt": "a cat", "negative_prompt": "x" * 2 * 1024 * 1024}).encode()
    refused = post_chunked(service.url + TEXT_TO_VIDEO_PATH, over)
    assert refused.status == 413
    assert (
        "is over the limit of POST /text-to-video/kling-3.0, 1,048,576 bytes"
        in json.loads(refused.read())["message"]
    )

    task_id = quiet_task(service, simulator, "chunked")
    flood = json.dumps({"task_id": task_id, "task_status": "succeed", "x": "z" * 2_000_000}).encode()
    refused = post_chunked(callback_url_for(service.services.settings, "chunked"), flood)
    assert refused.status == 413 and "1,048,576 bytes" in json.loads(refused.read())["message"]
    assert service.task("chunked")["task_status"] == "submitted"

    under = json.dumps({"task_id": task_id, "task_status": "processing"}).encode()
    assert post_chunked(callback_url_for(service.services.settings, "chunked"), under).status == 200
    body = {"prompt": "a cat", "options": {"external_task_id": "chunked-create"}}
    accepted = post_chunked(service.url + TEXT_TO_VIDEO_PATH, json.dumps(body).encode())
    assert accepted.status in (200, 202), accepted.read()


@pytest.mark.parametrize("shape", ["legacy", "newer"])
def test_a_callback_with_10000_outputs_keeps_callback_max_outputs_and_says_so(
    service: Service, simulator, shape: str
) -> None:
    external_id = f"many-{shape}"
    task_id = quiet_task(service, simulator, external_id)
    outputs = [{"id": f"v{n}", "url": f"https://cdn.example.com/{n}.mp4"} for n in range(10_000)]
    if shape == "legacy":
        body = {"task_id": task_id, "task_status": "succeed", "task_result": {"videos": outputs}}
    else:
        body = {"id": task_id, "status": "succeeded", "outputs": [{"type": "video", **o} for o in outputs]}

    assert post_callback(service, external_id, body).status_code == 200

    view = service.http.get(f"/v1/tasks/{external_id}").json()["data"]
    assert view["status"] == "succeed"
    assert [v["id"] for v in view["task_result"]["videos"]] == [f"v{n}" for n in range(16)]
    assert last_status_entry(service, external_id)["outputs_dropped"] == 10_000 - 16


def test_a_poll_answer_is_capped_like_a_callback(env: dict[str, str], simulator) -> None:
    """Kling's answer to a query can be as large as a callback: the success callback of this task would
    be refused (1.3 MB), and the poll that completes it instead keeps 16 videos and 16 KiB of body."""
    simulator.state.set_default(
        {"steps": [{"status": "succeed", "delay": 0, "send": False}], "videos": 10_000}
    )
    overrides = {"RECONCILE_AFTER_S": "0.05", "RECONCILE_POLLS_PER_S": "100", "CALLBACK_MAX_OUTPUTS": "3"}
    service, server, _ = make_service(env, **overrides)
    try:
        assert service.submit({**IMAGE, "external_task_id": "polled"}).status_code == 200
        wait_for(lambda: "polled" in reconcile(service.services).changed, timeout=15, what="a poll")

        entry = last_status_entry(service, "polled")
        assert (
            entry["source"] == "poll" and entry["body_truncated"] is True and entry["body_size"] > 1_000_000
        )
        assert len(json.dumps(entry["body"])) <= STORED_BODY_MAX_BYTES
        assert entry["body"]["task_status"] == "succeed" and entry["outputs_dropped"] == 10_000 - 3
        assert len(service.services.store.get("polled").task_result["videos"]) == 3
    finally:
        server.stop()


def test_events_carry_a_summary_of_the_history_and_the_api_the_whole(service: Service, simulator) -> None:
    task_id = quiet_task(service, simulator, "chatty")
    for n in range(30):
        body = {"task_id": task_id, "task_status": "processing", "n": n, "filler": "f" * 500}
        assert post_callback(service, "chatty", body).status_code == 200
    svc = service.services
    count = len(svc.store.history("chatty"))

    event = build_event(svc, svc.store.get("chatty"), "evt_chatty", "task.processing", datetime.now(UTC))

    data = json.loads(event.payload)["data"]
    assert data["history_count"] == count >= 32
    assert len(data["history"]) == EVENT_HISTORY_ENTRIES
    headline = ("at", "event", "source", "reported_status", "outcome", "status")
    newest = svc.store.history("chatty")[-EVENT_HISTORY_ENTRIES:]
    assert data["history"] == [{k: h[k] for k in headline} for h in newest]
    assert len(event.payload) < 4096  # thirty 600-byte bodies stayed in the task's own history
    whole = service.http.get("/v1/tasks/chatty").json()["data"]["history"]
    assert len(whole) == count and whole[-30]["body"]["n"] == 0  # the news keeps its body
    assert "body" not in whole[-1] and whole[-1]["body_size"] > 500  # a duplicate its size and sha256


@pytest.mark.parametrize(
    "body",
    [
        {"task_status": "succeed", "huge": "é" * 50_000},  # escapes take 6 bytes a character
        {"task_status": "succeed", "emoji": "😀" * 20_000},  # 12
        {"task_status": "succeed", "deep": {"a": {"b": {"c": ["x" * 40_000]}}}},
        {"task_status": "succeed", **{f"k{n}": n for n in range(5000)}},
        {"task_status": "succeed", "number": int("9" * 4000), "list": list(range(10_000))},
    ],
    ids=["accents", "emoji", "nested", "many-keys", "numbers"],
)
def test_a_cut_down_body_is_valid_json_within_the_limit_and_keeps_the_status(body: dict[str, Any]) -> None:
    kept = stored_body(body)
    assert kept["body_truncated"] is True
    text = json.dumps(kept["body"])
    assert len(text) <= STORED_BODY_MAX_BYTES and json.loads(text)["task_status"] == "succeed"
    assert len(text) > STORED_BODY_MAX_BYTES // 2  # cut down, not thrown away


def test_a_20_mb_base64_field_is_refused_and_nothing_is_kept(service: Service, simulator) -> None:
    huge = base64.b64encode(os.urandom(15 * 1024 * 1024)).decode()  # 20 MiB of Base64

    refused = service.submit({"image": huge, "external_task_id": "huge"})

    assert refused.status_code == 400
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [("image", "too_large")]
    assert service.services.redis.keys("kws:*") == []
    assert not Path(service.services.settings.archive_url).exists()
    assert simulator.state.tasks() == []


def post_with_length(
    service: Service, path: str, length: int, chunks: Iterable[bytes], **headers: str
) -> HTTPResponse:
    """A POST whose Content-Length says `length`, sent chunk by chunk (the test holds one at a time),
    the rest never sent if `chunks` end before: a server that trusts the header answers without it."""
    connection = http.client.HTTPConnection(urlsplit(service.url).netloc, timeout=60)
    headers = {"Content-Type": "application/json", "Content-Length": str(length), **headers}
    connection.request("POST", path, body=iter(chunks), headers=headers)
    return connection.getresponse()


V1_BOUND = V1_CREATE.max_bytes


@pytest.mark.parametrize(
    ("path", "limit", "reason"),
    [
        ("/v1/videos/image2video", V1_BOUND, "8 images (image, static_mask, six dynamic_masks) of 10 MB"),
        ("/kling/v1/videos/text2video", V1_BOUND, "allow a /v1 create"),
        ("/text-to-video/kling-3.0", 1024 * 1024, "no image, 1 MiB for its fields"),
        ("/image-to-video/kling-3.0", 140_858_712, "2 images (first_frame, last_frame) of 50 MB"),
        ("/image-to-video/kling-3.0-turbo", 70_953_644, "1 image (first_frame) of 50 MB"),
        (  # its rules would allow 601 MiB; no route reads more than two 50 MB images in Base64
            "/kling/omni-video/kling-3.0-omni",
            140_858_712,
            "9 images (first_frame, last_frame, 7 refer_image) of 50 MB in Base64 and 1 MiB for the "
            "other fields, 601.0 MiB, is more than the service reads of any request (two images of 50 MB "
            "in Base64): send the images as URLs",
        ),
        ("/v1/endpoints", V1_BOUND, "as every route without a create body of its own: the largest"),
    ],
)
def test_a_body_over_its_routes_limit_is_refused_before_it_is_read_naming_that_limit(
    service: Service, simulator, path: str, limit: int, reason: str
) -> None:
    refused = post_with_length(service, path, limit + 1, [b"{"])

    assert refused.status == 413
    answer = json.loads(refused.read())
    assert answer["code"] == 1201
    message = answer["message"]
    assert f"({limit + 1:,} bytes) is over the limit of POST {path}, {limit:,} bytes" in message
    assert reason in message
    assert service.services.redis.keys("kws:task*") == [] and simulator.state.tasks() == []


def test_a_body_at_its_routes_limit_is_read(service: Service) -> None:
    at_the_limit = service.http.post(
        TEXT_TO_VIDEO_PATH, content=b" " * unified_rules.TEXT_TO_VIDEO_BODY.max_bytes
    )
    assert at_the_limit.status_code == 400  # read, and found to be no JSON object
    assert at_the_limit.json()["message"].startswith("the request body")


def test_the_largest_valid_image_to_video_two_50_mb_frames_in_base64_is_accepted(service: Service) -> None:
    """139.8 MB, over the /v1 creates' bound: its route has its own. Sent in 1 MiB chunks; the server
    holds the whole body, once in this suite. Queued (respond-async, no worker), it is not sent on to
    the simulator, which would hold it too."""
    frame_chars = base64_chars(unified_rules.MAX_FRAME_BYTES)  # zero bytes: "AAAA", the last group "AAA="
    head = b'{"options": {"external_task_id": "two-frames"}, "contents": [{"type": "first_frame", "url": "'
    middle = b'"}, {"type": "last_frame", "url": "'
    tail = b'"}, {"type": "prompt", "text": "The sky clears"}]}'

    def frame() -> Iterator[bytes]:
        whole, rest = divmod(frame_chars - 4, 1024 * 1024)
        yield from [b"A" * 1024 * 1024] * whole
        yield b"A" * rest + b"AAA="

    def body() -> Iterator[bytes]:
        yield head
        yield from frame()
        yield middle
        yield from frame()
        yield tail

    length = len(head) + len(middle) + len(tail) + 2 * frame_chars
    assert V1_BOUND < length <= unified_rules.IMAGE_TO_VIDEO_BODY.max_bytes

    accepted = post_with_length(service, IMAGE_TO_VIDEO_PATH, length, body(), Prefer="respond-async")

    assert accepted.status == 202, accepted.read()[:500]
    assert json.loads(accepted.read())["data"]["external_id"] == "two-frames"
    stored, _ = stored_request(service, "two-frames")
    assert [item["url"]["size"] for item in stored["contents"][:2]] == [unified_rules.MAX_FRAME_BYTES] * 2


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(_JSON)
@settings(max_examples=300, deadline=None)
def test_json_as_stored_is_at_most_three_times_the_json_received(value: object) -> None:
    """What lets a callback under a third of the cap skip being measured: the store's JSON (ASCII
    escapes, spaced separators) is never more than three times as long as the most compact JSON."""
    received = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    assert len(json.dumps(value).encode()) <= 3 * len(received)
