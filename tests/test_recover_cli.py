"""`flask recover`: after Redis is flushed, Kling's list brings the tasks back and the videos still to
archive are archived, once; a second run changes nothing."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
from click.testing import Result
from flask import Flask

from tests.conftest import SIM_TOKEN, Workers, make_service
from tests.support import free_port, wait_for
from webhook_service.domain.clock import now_ms
from webhook_service.domain.recovery import LIST_PAGE_SIZE
from webhook_service.web.app import create_app

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a harbour"}


def silent(status: str, **scenario: object) -> dict[str, object]:
    """Kling gets the task to `status` at once and calls nobody back."""
    return {"steps": [{"status": status, "delay": 0, "send": False}], **scenario}


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def summary(result: Result) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^([^:\n]+): (\d+)", result.stdout, re.M)}


def test_recover_brings_back_lost_tasks_and_archives_each_video_once(env: dict[str, str], simulator) -> None:
    service, server, service_env = make_service(env)
    store = service.services.store
    workers = Workers(service_env)
    for name in ("done.mp4", "unarchived.mp4"):
        simulator.state.add_file(name, size=128 * 1024)
    simulator.state.set_scenario("old", silent("succeed"))
    simulator.state.set_scenario("unarchived", silent("succeed", video_files=["unarchived.mp4"]))
    simulator.state.set_scenario("failed", silent("failed"))
    simulator.state.set_scenario("open", silent("processing"))
    simulator.state.set_scenario("done", {"video_files": ["done.mp4"]})  # called back: archived at once
    try:
        assert service.submit({**IMAGE, "external_task_id": "old"}).status_code == 200
        old_created_at = store.get("old").upstream_created_at
        wait_for(lambda: now_ms() > old_created_at + 1, what="a later millisecond")
        since = datetime.fromtimestamp((old_created_at + 1) / 1000, UTC).isoformat()
        for external_id in ("done", "unarchived", "failed", "open"):
            assert service.submit({**IMAGE, "external_task_id": external_id}).status_code == 200
        not_ours = httpx.post(
            f"{simulator.url}/v1/videos/image2video",
            json=IMAGE,
            headers={"Authorization": f"Bearer {SIM_TOKEN}"},
        )
        assert not_ours.json()["code"] == 0
        workers.start()
        wait_for(lambda: store.get("done").archive_state == "archived", timeout=60, what="the first archive")
        workers.stop()
        service.services.redis.flushdb()

        first = run(service.app, "recover", "--since", since)
        assert first.exit_code == 0, first.output
        assert summary(first) == {
            "found": 5,
            "recreated": 4,
            "already known": 0,
            "not the service's (no external_task_id)": 1,
            "removed by retention": 0,
            "archive queued": 1,
            "already archived": 1,
            "archive failed before (not retried)": 0,
        }
        assert store.get("old") is None  # created before --since
        assert (store.get("failed").status, store.get("open").status) == ("failed", "processing")
        assert all(store.get(e).recovered for e in ("done", "unarchived", "failed", "open"))
        open_index = service.services.keys.open
        assert service.services.redis.zscore(open_index, "open") is not None  # reconciliation follows it

        workers.start()
        for external_id in ("done", "unarchived"):
            wait_for(
                lambda e=external_id: store.get(e).archive_state == "archived", timeout=60, what=external_id
            )
        second = run(service.app, "recover", "--since", since)
        assert second.exit_code == 0, second.output
        assert summary(second)["recreated"] == 0 and summary(second)["already known"] == 4
        assert summary(second)["already archived"] == 2 and summary(second)["archive queued"] == 0
    finally:
        workers.stop()
        server.stop()
    fetched = sorted(r["name"] for r in simulator.state.file_requests())
    assert fetched == ["done.mp4", "unarchived.mp4"]  # each video fetched once, before or after the loss
    root = Path(service.services.settings.archive_url)
    assert sorted(p.parent.name for p in root.rglob("*.mp4")) == ["done", "unarchived"]


def test_recover_exit_codes(env: dict[str, str]) -> None:
    app = create_app(env)
    bad = run(app, "recover", "--since", "last tuesday")
    assert bad.exit_code == 2 and "--since" in bad.output
    unreachable = create_app({**env, "KLING_API_BASE": f"http://127.0.0.1:{free_port()}"})
    down = run(unreachable, "recover")
    assert down.exit_code == 3 and "Kling's list is unavailable" in down.output
    assert "found: 0" in down.stdout


def test_recover_reads_every_page_of_a_v1_list(env: dict[str, str], simulator) -> None:
    """More tasks of one /v1 type than a page holds (500): each is found and recorded once, the oldest,
    on the second page, too. The tasks are made in the simulator's state directly: 502 creates over
    HTTP would only cost time."""
    service, server, _ = make_service(env)
    simulator.state.set_default(silent("processing"))
    count = LIST_PAGE_SIZE + 2
    since = datetime.fromtimestamp((now_ms() - 1000) / 1000, UTC).isoformat()
    for n in range(count):
        body = {"prompt": "a harbour", "external_task_id": f"paged-{n:03d}"}
        simulator.state.create(body, {}, simulator.url, "text2video")
    try:
        result = run(service.app, "recover", "--since", since)
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert summary(result)["found"] == count and summary(result)["recreated"] == count
    store = service.services.store
    oldest = store.get("paged-000")
    assert oldest is not None and oldest.recovered and oldest.type == "text2video"
    assert len(store.newest(0, count + 10)) == count
