"""One list of a client's tasks across every task type: `GET /v1/tasks?type=&status=` and the
dashboard's type filter (Kling lists each type at its own path only)."""

from __future__ import annotations

import itertools
import re
from typing import Any

from flask import Flask

from webhook_service.domain.tasks import Status, StatusUpdate, Task, apply_update
from webhook_service.domain.tenants import upstream_id
from webhook_service.web.app import create_app

KEY_A = "team-a-key-0123456789abcdef"
KEY_B = "team-b-key-0123456789abcdef"
CLOCK = itertools.count(1_780_000_000_000)


def add_task(
    app: Flask,
    external_id: str,
    type_name: str,
    status: Status,
    tenant: str = "default",
    request: dict[str, Any] | None = None,
) -> None:
    """Each a millisecond after the last, so that newest first is one order."""
    store = app.extensions["webhook_service"].store
    created = next(CLOCK)
    task = Task(external_task_id=external_id, tenant=tenant, type=type_name, model_name="kling-v1")
    task.created_at = task.updated_at = created
    store.create(task, request or {"prompt": f"prompt of {external_id}"})
    update = StatusUpdate(status=status, task_id=f"kling-{external_id}")
    store.update(external_id, lambda t: apply_update(t, update), history={"event": "status"})


def listed(app: Flask, query: str, key: str | None = None) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = app.test_client().get(f"/v1/tasks{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [task["external_task_id"] for task in response.json["data"]]


def test_the_api_lists_every_type_newest_first_narrowed_by_type_and_status(app: Flask) -> None:
    add_task(app, "clip-1", "image2video", Status.SUCCEED)
    add_task(app, "picture-1", "generations", Status.SUCCEED)
    add_task(app, "clip-2", "text2video", Status.FAILED)
    add_task(app, "picture-2", "generations", Status.FAILED)
    add_task(app, "outfit-1", "kolors-virtual-try-on", Status.PROCESSING)

    assert listed(app, "") == ["outfit-1", "picture-2", "clip-2", "picture-1", "clip-1"]
    assert listed(app, "?type=generations") == ["picture-2", "picture-1"]
    assert listed(app, "?status=failed") == ["picture-2", "clip-2"]
    assert listed(app, "?type=generations&status=succeed") == ["picture-1"]
    assert listed(app, "?limit=2&offset=1") == ["picture-2", "clip-2"]
    assert listed(app, "?type=video-extend") == []

    task = app.test_client().get("/v1/tasks?type=kolors-virtual-try-on").json["data"][0]
    assert task["type"] == "kolors-virtual-try-on" and task["status"] == "processing"
    assert "history_count" in task  # summarised: the whole history is one GET /v1/tasks/<id> away


def test_a_bad_filter_is_a_400_naming_it(app: Flask) -> None:
    client = app.test_client()
    for query, field in (("?type=image2vid", "type"), ("?status=done", "status"), ("?limit=0", "limit")):
        response = client.get(f"/v1/tasks{query}")
        assert response.status_code == 400, query
        assert response.json["errors"][0]["field"] == field
    assert "image2video" in client.get("/v1/tasks?type=image2vid").json["message"]  # says what would do


def test_a_tenant_lists_only_its_own_tasks(env: dict[str, str]) -> None:
    app = create_app({**env, "SERVICE_API_KEYS": f"team-a:{KEY_A},team-b:{KEY_B}"})
    add_task(app, upstream_id("team-a", "ours"), "generations", Status.SUCCEED, tenant="team-a")
    add_task(app, upstream_id("team-b", "theirs"), "generations", Status.SUCCEED, tenant="team-b")
    assert listed(app, "?type=generations", KEY_A) == ["ours"]
    assert listed(app, "", KEY_B) == ["theirs"]
    assert app.test_client().get("/v1/tasks").status_code == 401


def test_the_dashboard_filters_by_type_and_shows_it(app: Flask) -> None:
    for n in range(30):
        add_task(app, f"mixed-{n:02}", "generations" if n % 2 else "image2video", Status.SUCCEED)
    client = app.test_client()

    page = client.get("/?type=generations").text
    rows = re.findall(r'<tr class="task[^"]*" data-task="([^"]+)"', page)
    assert rows == [f"mixed-{n:02}" for n in range(29, 0, -2)]  # 15 of them, one page
    assert re.findall(r'<td class="type">([^<]+)</td>', page) == ["generations"] * 15
    assert '<option value="generations" selected>' in page

    everything = client.get("/").text
    assert set(re.findall(r'<td class="type">([^<]+)</td>', everything)) == {"generations", "image2video"}
    older = re.search(r'href="([^"]+)">Older', client.get("/?type=image2video&status=succeed").text)
    assert older is None  # 15 tasks: one page
    assert "of type expand" in client.get("/?type=expand").text  # "No task matches ... of type expand."
    assert client.get("/?type=no-such-type").status_code == 200  # an unknown type filters nothing


def test_the_list_shows_what_each_type_asks_for_where_its_body_keeps_it(app: Flask) -> None:
    """Not every body has a top-level prompt: a unified one nests it, lip-sync says its words in
    `input.text`, an effects task names a scene."""
    bodies = {
        "unified": ("kling-3.0-image-to-video", {"contents": [{"type": "prompt", "text": "a slow pan"}]}),
        "talking": ("lip-sync", {"input": {"mode": "text2video", "text": "Hello there"}}),
        "hugging": ("effects", {"effect_scene": "hug", "input": {"images": ["a", "b"]}}),
        "dressed": ("kolors-virtual-try-on", {"human_image": "h", "cloth_image": "c"}),
    }
    for name, (type_name, request) in bodies.items():
        add_task(app, name, type_name, Status.SUCCEED, request=request)
    page = app.test_client().get("/").text
    prompts = dict(re.findall(r'data-task="([^"]+)".*?<td class="prompt" title="([^"]*)"', page, re.S))
    assert prompts == {
        "unified": "a slow pan",
        "talking": "Hello there",
        "hugging": "effect: hug",
        "dressed": "",
    }


def test_a_recorded_callback_url_with_a_port_out_of_range_is_shown_without_it(app: Flask) -> None:
    """Refused at the door now (test_validation), but a task recorded before may hold one: its views
    show the URL's origin, never a 500."""
    store = app.extensions["webhook_service"].store
    task = Task(external_task_id="odd-port", type="image2video", model_name="kling-v1")
    task.client_callback_url = "https://hooks.example:99999/secret-path"
    store.create(task, {"prompt": "p"})
    client = app.test_client()
    (listed,) = client.get("/v1/tasks").json["data"]
    assert listed["client_callback_url"] == "https://hooks.example/…"
    assert client.get("/v1/tasks/odd-port").json["data"]["client_callback_url"] == "https://hooks.example/…"
