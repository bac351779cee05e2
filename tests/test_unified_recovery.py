"""`flask recover` for Kling's unified API: after Redis is flushed, the kling-3.0 tasks whose callbacks
were missed are found again in Kling's unified list (`POST /tasks`, by cursor, the unified API key as
Bearer), recorded again with the type their metadata.json or request.json keeps (or, without either,
the documented fallback, said in their history), and their videos archived once; a second run changes
nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.conftest import Service, Workers, make_service
from tests.support import wait_for
from tests.test_recover_cli import run, silent, summary
from tests.test_unified_api import API_KEY, PROMPT, env, simulator  # noqa: F401 (the unified key's fixtures)
from webhook_service.domain.clock import now_ms
from webhook_service.domain.omni_rules import OMNI_VIDEO_PATH
from webhook_service.domain.recovery import LIST_PAGE_SIZE, UNIFIED_FALLBACK_TYPE, kling_tasks_since
from webhook_service.domain.unified_rules import IMAGE_TO_VIDEO_PATH, TEXT_TO_VIDEO_PATH

FRAME = {"type": "first_frame", "url": "https://example.com/first-frame.png"}
BODIES = {  # external id -> (create path, body): one of each unified type
    "u-kept": (IMAGE_TO_VIDEO_PATH, {"contents": [{"type": "prompt", "text": PROMPT}, FRAME]}),
    "u-lost": (OMNI_VIDEO_PATH, {"contents": [{"type": "prompt", "text": PROMPT}]}),
    "u-open": (TEXT_TO_VIDEO_PATH, {"prompt": PROMPT}),
}
KLING_AUTH = {"Authorization": f"Bearer {API_KEY}"}


def test_kling_lists_its_unified_tasks_by_cursor_newest_first_in_a_window(simulator) -> None:  # noqa: F811
    made = []
    for n in range(3):
        body = {"prompt": PROMPT, "options": {"external_task_id": f"sim-{n}"}}
        answer = httpx.post(f"{simulator.url}{TEXT_TO_VIDEO_PATH}", json=body, headers=KLING_AUTH)
        made.append(answer.json()["data"]["create_time"])
    tasks = f"{simulator.url}/tasks"
    first = httpx.post(tasks, json={"limit": 2}, headers=KLING_AUTH).json()["data"]
    assert [task["external_id"] for task in first["result"]] == ["sim-2", "sim-1"]
    assert first["count"] == 2 and first["has_more"] is True and first["next_cursor"]
    rest = httpx.post(tasks, json={"limit": 2, "cursor": first["next_cursor"]}, headers=KLING_AUTH).json()
    assert [task["external_id"] for task in rest["data"]["result"]] == ["sim-0"]
    assert rest["data"]["has_more"] is False and rest["data"]["next_cursor"] == ""
    window = {"start_time": str(made[2]), "end_time": str(made[2] + 1)}
    in_window = httpx.post(tasks, json=window, headers=KLING_AUTH).json()["data"]["result"]
    assert [task["external_id"] for task in in_window] == ["sim-2"]
    images = {"filters": [{"key": "product_type", "values": ["image"]}]}
    assert httpx.post(tasks, json=images, headers=KLING_AUTH).json()["data"]["result"] == []
    assert httpx.post(tasks, json={"limit": 501}, headers=KLING_AUTH).status_code == 400
    assert httpx.post(tasks, json={}, headers={"Authorization": "Bearer not-the-key"}).status_code == 401


def test_recover_brings_back_lost_unified_tasks_and_archives_each_video_once(env, simulator) -> None:  # noqa: F811
    service, server, service_env = make_service(env)
    store = service.services.store
    workers = Workers(service_env)
    for name in ("kept.mp4", "lost.mp4"):
        simulator.state.add_file(name, size=128 * 1024)
    simulator.state.set_scenario("u-kept", {"video_files": ["kept.mp4"]})  # called back: archived at once
    simulator.state.set_scenario("u-lost", silent("succeed", video_files=["lost.mp4"]))  # callbacks missed
    simulator.state.set_scenario("u-open", silent("processing"))
    since = datetime.fromtimestamp((now_ms() - 1000) / 1000, UTC).isoformat()
    try:
        for external_id, (path, body) in BODIES.items():
            sent = {**body, "options": {"external_task_id": external_id}}
            assert service.http.post(path, json=sent).status_code == 200, external_id
        no_id = {"prompt": PROMPT}  # made at Kling by someone else: no external id
        other = httpx.post(f"{simulator.url}{TEXT_TO_VIDEO_PATH}", json=no_id, headers=KLING_AUTH)
        assert other.json()["code"] == 0
        workers.start()
        wait_for(lambda: store.get("u-kept").archive_state == "archived", timeout=60, what="an archive")
        workers.stop()
        service.services.redis.flushdb()
        assert service.http.get("/tasks", params={"external_task_ids": "u-lost"}).json()["data"] == []
        root = Path(service.services.settings.archive_url)
        (request_json,) = root.rglob("u-lost/inputs/request.json")
        request_json.unlink()  # as for a task recorded before request.json was written for every task

        first = run(service.app, "recover", "--since", since)
        assert first.exit_code == 0, first.output
        assert summary(first) == {
            "found": 4,
            "recreated": 3,
            "already known": 0,
            "not the service's (no external_task_id)": 1,
            "removed by retention": 0,
            "archive queued": 1,
            "already archived": 1,
            "archive failed before (not retried)": 0,
        }
        kept, lost, still_open = (store.get(e) for e in BODIES)
        assert all(task.recovered for task in (kept, lost, still_open))
        assert kept.type == "kling-3.0-image-to-video"  # from its metadata.json
        assert still_open.type == "kling-3.0-text-to-video"  # from the request.json of its recording
        assert lost.type == UNIFIED_FALLBACK_TYPE  # neither: Kling's list does not say which
        (marker,) = [e for e in store.history("u-lost") if e["event"] == "recovered"]
        assert marker["type_known"] is False and marker["from_archive"] is False
        for external_id in ("u-kept", "u-open"):
            marker = next(e for e in store.history(external_id) if e["event"] == "recovered")
            assert "type_known" not in marker and marker["from_archive"] is True
        assert (lost.status, still_open.status) == ("succeed", "processing")
        assert service.services.redis.zscore(service.services.keys.open, "u-open") is not None  # followed

        workers.start()
        for external_id in ("u-kept", "u-lost"):  # the kept one's files are checked, not fetched again
            wait_for(
                lambda e=external_id: store.get(e).archive_state == "archived", timeout=60, what=external_id
            )
        tasks, histories = {e: store.get(e) for e in BODIES}, {e: store.history(e) for e in BODIES}
        second = run(service.app, "recover", "--since", since)
        assert second.exit_code == 0, second.output
        assert summary(second)["recreated"] == 0 and summary(second)["already known"] == 3
        assert summary(second)["already archived"] == 2 and summary(second)["archive queued"] == 0
        assert {e: store.get(e) for e in BODIES} == tasks  # known tasks are left alone
        for external_id, before in histories.items():  # Kling's report noted as nothing new
            (noted,) = store.history(external_id)[len(before) :]
            assert (noted["source"], noted["outcome"]) == ("recover", "duplicate")
        (shown,) = service.http.get("/tasks", params={"external_task_ids": "u-lost"}).json()["data"]
        assert shown["status"] == "succeeded" and shown["outputs"][0]["archive_url"]
    finally:
        workers.stop()
        server.stop()
    assert sorted(r["name"] for r in simulator.state.file_requests()) == ["kept.mp4", "lost.mp4"]  # once each
    assert sorted(p.parent.name for p in root.rglob("*.mp4")) == ["u-kept", "u-lost"]


def test_recovery_reads_every_page_of_kling_s_unified_list(service: Service, simulator) -> None:  # noqa: F811
    """More tasks than one page holds (500): each is found once, by following next_cursor."""
    simulator.state.set_default(silent("processing"))
    with httpx.Client(base_url=simulator.url, headers=KLING_AUTH) as kling:
        for n in range(LIST_PAGE_SIZE + 2):
            body = {"prompt": PROMPT, "options": {"external_task_id": f"many-{n}"}}
            assert kling.post(TEXT_TO_VIDEO_PATH, json=body).json()["code"] == 0
    found = [data["external_id"] for _, data in kling_tasks_since(service.services, now_ms() - 60_000)]
    assert sorted(found) == sorted(f"many-{n}" for n in range(LIST_PAGE_SIZE + 2))
