"""Of Kling's news a task keeps only the fields Kling documents, each within its cap: a callback with a
valid token, a poll or `flask recover` cannot make a task's record, or the events that carry it, large."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Service
from tests.test_bounds import last_status_entry, post_callback, quiet_task
from webhook_service.domain.bounds import STORED_BODY_MAX_BYTES
from webhook_service.domain.news_fields import (
    ID_MAX_CHARS,
    NAME_MAX_CHARS,
    NAMES_LISTED,
    RESULT_LISTS,
    SHORT_MAX_CHARS,
    URL_MAX_CHARS,
)
from webhook_service.domain.recovery import Found, recover_from_kling
from webhook_service.domain.tasks import update_from_callback
from webhook_service.domain.video_extend_rules import VIDEO_ID_MAX_CHARS
from webhook_service.notify.payload import build_event

URL = "https://cdn.example.com/v1.mp4"
LONG_URL = "https://cdn.example.com/" + "a" * 800_000


@pytest.mark.parametrize("shape", ["legacy", "newer"])
def test_a_callback_keeps_only_klings_fields_each_within_its_cap(
    service: Service, simulator, shape: str
) -> None:
    """The 800 KB extra a valid token could add (an unknown key beside `videos`, or a URL no server
    would take) is named in the history and kept nowhere: the task's record and its events stay small."""
    external_id = f"padded-{shape}"
    task_id = quiet_task(service, simulator, external_id)
    if shape == "legacy":
        videos = [{"id": "v1", "url": URL, "duration": "5", "thumbnail": "t" * 1000}]
        result = {"videos": videos, "padding": "p" * 800_000}
        body: dict[str, Any] = {"task_id": task_id, "task_status": "succeed", "task_result": result}
        dropped = {
            "count": 2,
            "bytes": 1002 + 800_002,
            "names": ["task_result.videos[0].thumbnail", "task_result.padding"],
        }
    else:
        outputs = [
            {"type": "video", "id": "v1", "url": URL, "duration": "5"},
            {"type": "video", "id": "v2", "url": LONG_URL},
        ]
        body = {"id": task_id, "status": "succeeded", "outputs": outputs}
        dropped = {"count": 1, "bytes": len(LONG_URL) + 2, "names": ["task_result.videos[1].url"]}

    assert post_callback(service, external_id, body).status_code == 200

    svc = service.services
    task = svc.store.get(external_id)
    kept = [{"id": "v1", "url": URL, "duration": "5"}] + ([{"id": "v2"}] if shape == "newer" else [])
    assert task is not None and task.status == "succeed" and task.task_result == {"videos": kept}
    assert last_status_entry(service, external_id)["fields_dropped"] == dropped
    assert svc.redis.strlen(svc.keys.task(external_id)) < 1024
    event = build_event(svc, task, "evt_padded", "task.succeed", datetime.now(UTC))
    assert len(event.payload) < 4096


def test_ids_times_units_and_a_parent_video_over_their_caps_are_dropped_and_named() -> None:
    body = {
        "task_id": "t" * (ID_MAX_CHARS + 1),
        "task_status": "succeed",
        "final_unit_deduction": "9" * (SHORT_MAX_CHARS + 1),
        "created_at": 10**30,
        "updated_at": -1,
        "task_info": {"parent_video": {"id": "p1", "url": LONG_URL, "duration": "5"}},
        "task_result": {
            "images": [{"index": 0, "url": URL, "watermark_url": URL}, "not an object", {"index": True}],
            "videos": {"not": "a list"},
        },
    }
    update = update_from_callback(body)
    assert update.task_id is None and update.final_unit_deduction is None
    assert update.upstream_created_at is None and update.upstream_updated_at is None
    assert update.parent_video == {"id": "p1", "duration": "5"}
    assert update.task_result == {"images": [{"index": 0, "url": URL, "watermark_url": URL}, {}]}
    assert update.fields_dropped is not None and update.fields_dropped["names"] == [
        "task_result.images[1]",
        "task_result.images[2].index",
        "task_result.videos",
        "task_info.parent_video.url",
        "task_id",
        "final_unit_deduction",
        "created_at",
        "updated_at",
    ]
    cut_id = {**body, "task_info": {"parent_video": {"id": "p" * (ID_MAX_CHARS + 1)}}}
    assert update_from_callback(cut_id).parent_video is None  # without its id, nothing of it


def test_the_record_of_what_was_dropped_is_bounded_too() -> None:
    result = {"k" * 1000 + str(n): n for n in range(1000)}
    update = update_from_callback({"task_id": "1", "task_status": "succeed", "task_result": result})
    assert update.task_result == {}
    record = update.fields_dropped
    assert record is not None and record["count"] == 1000 and len(record["names"]) == NAMES_LISTED
    assert all(len(name) <= NAME_MAX_CHARS + 1 for name in record["names"])


def test_the_caps_agree_with_the_rest_of_the_service() -> None:
    """A video id the service keeps can be named by a video-extend request, and a kept URL is longer
    than the 2,048 characters most software promises."""
    assert ID_MAX_CHARS == VIDEO_ID_MAX_CHARS and URL_MAX_CHARS >= 2048


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5000),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=20), inner, max_size=4),
    max_leaves=20,
)
_ITEM = st.dictionaries(
    st.sampled_from(["id", "url", "watermark_url", "duration", "index", "type", "other"]), _JSON, max_size=6
)
_RESULT = st.dictionaries(
    st.sampled_from(["videos", "images", "audios", "padding"]),
    st.lists(_ITEM, max_size=4) | _JSON,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(result=_RESULT, shape=st.sampled_from(["legacy", "newer"]))
def test_whatever_the_result_only_documented_fields_within_their_caps_are_kept(
    result: dict[str, Any], shape: str
) -> None:
    if shape == "legacy":
        body: dict[str, Any] = {"task_id": "1", "task_status": "succeed", "task_result": result}
    else:
        outputs = [
            {**item, "type": "image" if name == "images" else "video"}
            for name, items in result.items()
            if isinstance(items, list)
            for item in items
            if isinstance(item, dict)
        ]
        body = {"id": "1", "status": "succeeded", "outputs": outputs}
    update = update_from_callback(body)
    for name, items in (update.task_result or {}).items():
        fields = RESULT_LISTS[name]
        for item in items:
            for key, value in item.items():
                assert key in fields and not isinstance(value, bool | dict | list)
                assert len(value if isinstance(value, str) else json.dumps(value)) <= fields[key]
    # The default 16 outputs a list, each field at its cap in characters of 12 bytes as stored JSON.
    bound = sum(16 * sum(12 * cap + len(key) + 6 for key, cap in f.items()) for f in RESULT_LISTS.values())
    assert len(json.dumps(update.task_result)) <= bound + 64


def test_recover_keeps_a_list_item_as_a_poll_does(service: Service) -> None:
    """`flask recover` records Kling's list item in the history cut down to STORED_BODY_MAX_BYTES, and
    keeps of its result what a callback would."""
    data = {
        "task_id": "900001",
        "task_status": "succeed",
        "task_info": {"external_task_id": "listed-1"},
        "created_at": 1_700_000_000_000,
        "updated_at": 1_700_000_000_000,
        "task_result": {"videos": [{"id": "v1", "url": URL, "duration": "5"}], "padding": "p" * 800_000},
    }
    svc = service.services
    assert recover_from_kling(svc, data, "image2video").found is Found.RECREATED
    entry = last_status_entry(service, "listed-1")
    assert entry["source"] == "recover" and entry["body_truncated"] is True
    assert len(json.dumps(entry["body"])) <= STORED_BODY_MAX_BYTES
    assert entry["fields_dropped"]["names"] == ["task_result.padding"]
    task = svc.store.get("listed-1")
    assert task is not None and task.task_result == {"videos": [{"id": "v1", "url": URL, "duration": "5"}]}
    history_key = svc.keys.task_history("listed-1")
    assert svc.redis.memory_usage(history_key, samples=0) < 3 * STORED_BODY_MAX_BYTES
