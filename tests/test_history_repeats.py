"""News a task already has keeps no body in its history: whoever holds a leaked callback URL can send
duplicates all day, and the history keeps its last 500 entries of a few hundred bytes each."""

from __future__ import annotations

import hashlib
import json

import httpx

from tests.conftest import Service
from tests.test_bounds import post_callback, quiet_task
from webhook_service.domain.bounds import (
    HISTORY_LIMIT,
    REPEAT_ENTRY_MAX_BYTES,
    STORED_BODY_MAX_BYTES,
    UPSTREAM_IDS_MAX,
    WEBHOOK_ID_MAX_CHARS,
)
from webhook_service.domain.callback_tokens import callback_url_for


def test_600_duplicates_of_80_kb_leave_a_history_of_500_small_entries(service: Service, simulator) -> None:
    task_id = quiet_task(service, simulator, "repeated")
    svc = service.services
    first = {"task_id": task_id, "task_status": "processing", "filler": "f" * 80_000}
    assert post_callback(service, "repeated", first).status_code == 200
    applied = svc.store.history("repeated")[-1]
    assert applied["outcome"] == "applied" and applied["body_truncated"] is True  # the news keeps its body

    url = callback_url_for(svc.settings, "repeated")
    sent = []
    with httpx.Client(timeout=30) as client:
        for n in range(600):
            status = "submitted" if n % 10 == 0 else "processing"  # one in ten stale, the rest duplicates
            body = json.dumps({"task_id": task_id, "task_status": status, "n": n, "filler": "f" * 80_000})
            headers = {"Content-Type": "application/json", "webhook-id": f"msg_{n}_" + "i" * 4000}
            answer = client.post(url, content=body.encode(), headers=headers)
            assert answer.status_code == 200, answer.text
            sent.append(body.encode())

    history = svc.store.history("repeated")
    assert len(history) == HISTORY_LIMIT
    assert {entry["outcome"] for entry in history} == {"duplicate", "stale"}
    last = history[-1]
    whole = json.dumps(json.loads(sent[-1]), separators=(",", ":")).encode()
    assert "body" not in last and last["body_size"] == len(whole)
    assert last["body_sha256"] == hashlib.sha256(whole).hexdigest()
    assert len(last["webhook_id"]) == WEBHOOK_ID_MAX_CHARS + 1 and last["webhook_id"].endswith("…")
    raw = svc.redis.lrange(svc.keys.task_history("repeated"), 0, -1)
    assert max(len(item) for item in raw) <= REPEAT_ENTRY_MAX_BYTES
    used = svc.redis.memory_usage(svc.keys.task_history("repeated"), samples=0)
    assert used <= HISTORY_LIMIT * REPEAT_ENTRY_MAX_BYTES  # 48 MB sent, 165 KB kept (was 8 MB)


def test_news_naming_another_upstream_id_keeps_no_body_when_it_changes_nothing(
    service: Service, simulator
) -> None:
    """A gateway's callback may name Kling's task_id beside the gateway's: the task learns the id (no
    status step), and the entry, a duplicate, describes the body rather than keeping it."""
    task_id = quiet_task(service, simulator, "two-ids")
    body = {"task_id": "kling-side-1", "task_status": "submitted", "filler": "f" * STORED_BODY_MAX_BYTES}
    assert post_callback(service, "two-ids", body).status_code == 200
    entry = service.services.store.history("two-ids")[-1]
    assert entry["outcome"] == "duplicate" and "body" not in entry and "body_truncated" not in entry
    assert entry["body_size"] > STORED_BODY_MAX_BYTES
    task = service.services.store.get("two-ids")
    assert task is not None and task.task_id == task_id and task.upstream_task_ids == ["kling-side-1"]


def test_a_task_learns_a_bounded_number_of_upstream_ids(service: Service, simulator) -> None:
    """Each task_id a callback names is kept in the task and keyed to it: past UPSTREAM_IDS_MAX, a
    callback naming yet another is refused (409) and changes nothing."""
    quiet_task(service, simulator, "many-ids")
    answers = [
        post_callback(service, "many-ids", {"task_id": f"other-{n}", "task_status": "submitted"}).status_code
        for n in range(UPSTREAM_IDS_MAX + 3)
    ]
    assert answers == [200] * UPSTREAM_IDS_MAX + [409] * 3
    task = service.services.store.get("many-ids")
    assert task is not None and task.upstream_task_ids == [f"other-{n}" for n in range(UPSTREAM_IDS_MAX)]
    assert service.services.store.external_id_for(f"other-{UPSTREAM_IDS_MAX}") is None
