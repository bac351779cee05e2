"""Tenants kept apart: two teams share one service and one Kling account, and neither sees or changes the
other's tasks, videos, deliveries or endpoints, through any route the OpenAPI document lists (the walk is
generated from the document, so a route added later is covered without editing this test; a body that
names a video or face session, or one of a route that is no create, needs its entry in a table here, and
the walk fails until it has one), nor on the dashboard. An admin sees everyone's."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

from tests import test_notify
from tests.conftest import Service
from tests.support import wait_for
from tests.test_notify import Answer, Receiver, Stack, deliveries, webhooks
from webhook_service.config import ConfigError, Settings
from webhook_service.domain.tenants import EVERYONE, Scope, client_id, tenant_of, upstream_id
from webhook_service.notify.records import endpoint_id
from webhook_service.web.openapi import document

KEY_A = "team-a-key-0123456789abcdefgh"
KEY_B = "team-b-key-0123456789abcdefgh"
KEY_DEFAULT = "default-key-0123456789abcdefg"
KEY_ADMIN = "admin-key-0123456789abcdefghi"
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a red fox running through snow"}
TENANTS = {
    "SERVICE_API_KEYS": f"team-a:{KEY_A},team-b:{KEY_B},{KEY_DEFAULT}",
    "SERVICE_ADMIN_KEYS": f"ops:{KEY_ADMIN}",
}
receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures
# Paths that hold no tenant's objects: Kling's callbacks (their token names the task), health, docs.
NOT_TENANT_DATA = {"/callbacks/kling", "/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"}
# What a body may name of another object: sent by B naming A's, a create must be refused on that field.
REFERENCES = {"video_id", "session_id"}
A_FACE = {
    "face_id": "0",
    "audio_id": "a",
    "sound_start_time": 0,
    "sound_end_time": 2000,
    "sound_insert_time": 0,
}
# Per path (under / or /kling): a body naming A's video or face session, and the field refused.
NAMING_A = {
    "/v1/videos/video-extend": ({"video_id": "<video>"}, "video_id"),
    "/v1/videos/lip-sync": (
        {"input": {"video_id": "<video>", "mode": "text2video", "text": "hi", "voice_id": "uk_man2"}},
        "input.video_id",
    ),
    "/v1/videos/identify-face": ({"video_id": "<video>"}, "video_id"),
    "/v1/videos/advanced-lip-sync": ({"session_id": "<session>", "face_choose": [A_FACE]}, "session_id"),
}
# Per path: the body of an operation that is no create (B's own object): it asks for or changes A's.
BODIES = {
    "/v1/endpoints/{endpoint_id}": {"enabled": False, "description": "team-b was here"},
    "/tasks": {"limit": 500},  # Kling's unified list, asked for everything
}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create(service: Service, key: str, external_id: str, **body: Any) -> httpx.Response:
    return service.http.post(
        "/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id, **body}, headers=bearer(key)
    )


def test_upstream_ids_keep_tenants_apart_and_each_client_sees_its_own_id() -> None:
    assert upstream_id("default", "job-1") == "job-1"
    assert upstream_id("team-a", "job-1") == "team-a~job-1"
    assert tenant_of("team-a~job-1") == "team-a" and tenant_of("job-1") == "default"
    assert client_id("team-a~job-1", "team-a") == "job-1"
    assert Scope("team-a").candidates("job-1") == ["team-a~job-1"]
    assert EVERYONE.candidates("team-a~job-1") == ["team-a~job-1"]
    assert not Scope("team-b").sees("team-a") and Scope("team-b", admin=True).sees("team-a")


def test_named_keys_and_admin_keys_are_read_from_the_environment(env: dict[str, str]) -> None:
    settings = Settings.from_env({**env, **TENANTS})
    found = {(c.tenant, c.key, c.admin) for c in settings.client_keys}
    assert found == {
        ("team-a", KEY_A, False),
        ("team-b", KEY_B, False),
        ("default", KEY_DEFAULT, False),
        ("ops", KEY_ADMIN, True),
    }
    assert KEY_A not in repr(settings.client_keys)  # a key never reaches a log line through a repr
    with pytest.raises(ConfigError, match=r"^SERVICE_API_KEYS: entry 1 names tenant 'Team A'"):
        Settings.from_env({**env, "SERVICE_API_KEYS": f"Team A:{KEY_A}"})
    with pytest.raises(ConfigError, match=r"^SERVICE_ADMIN_KEYS: key 1 has 5 characters"):
        Settings.from_env({**env, "SERVICE_ADMIN_KEYS": "ops:short"})
    with pytest.raises(ConfigError, match=r"^SERVICE_ADMIN_KEYS: key 1 is given twice"):
        Settings.from_env({**env, "SERVICE_API_KEYS": KEY_A, "SERVICE_ADMIN_KEYS": KEY_A})


@pytest.fixture
def shared(services_with: Callable[..., Service]) -> Service:
    return services_with(**TENANTS)


def test_two_tenants_may_both_use_job_1_and_kling_gets_one_id_each(shared: Service, simulator: Any) -> None:
    first, second = create(shared, KEY_A, "job-1"), create(shared, KEY_B, "job-1")
    assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
    assert first.json()["data"]["task_info"]["external_task_id"] == "job-1"
    assert second.json()["data"]["task_info"]["external_task_id"] == "job-1"
    a_task_id, b_task_id = first.json()["data"]["task_id"], second.json()["data"]["task_id"]
    assert a_task_id != b_task_id
    upstream = {task["external_task_id"] for task in simulator.state.tasks()}
    assert upstream == {"team-a~job-1", "team-b~job-1"}

    # A taken id is refused within the tenant only, and says nothing about other tenants' ids.
    again = create(shared, KEY_A, "job-1")
    assert again.status_code == 400 and "already used" in again.json()["message"]
    assert create(shared, KEY_DEFAULT, "job-1").status_code == 200

    mine = shared.http.get("/v1/videos/image2video/job-1", headers=bearer(KEY_A)).json()["data"]
    assert mine["task_id"] == a_task_id and mine["task_info"]["external_task_id"] == "job-1"
    theirs = shared.http.get(f"/v1/videos/image2video/{a_task_id}", headers=bearer(KEY_B))
    missing = shared.http.get("/v1/videos/image2video/no-such-task", headers=bearer(KEY_B))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["code"] == missing.json()["code"]
    assert shared.http.get("/v1/tasks/team-a~job-1", headers=bearer(KEY_B)).status_code == 404

    listed = shared.http.get("/v1/videos/image2video", headers=bearer(KEY_A)).json()["data"]
    assert [task["task_id"] for task in listed] == [a_task_id]
    view = shared.http.get("/v1/tasks/job-1", headers=bearer(KEY_A)).json()["data"]
    assert view["external_task_id"] == "job-1" and view["tenant"] == "team-a"

    everything = shared.http.get("/v1/videos/image2video", headers=bearer(KEY_ADMIN)).json()["data"]
    assert {task["task_id"] for task in everything} >= {a_task_id, b_task_id}
    by_upstream_id = shared.http.get("/v1/tasks/team-b~job-1", headers=bearer(KEY_ADMIN))
    assert by_upstream_id.json()["data"]["task_id"] == b_task_id

    # The operator's CLI sees every tenant, or one.
    cli = shared.app.test_cli_runner()
    one = cli.invoke(args=["tasks", "list", "--tenant", "team-a"])
    assert one.exit_code == 0 and "team-a~job-1" in one.output and "team-b~job-1" not in one.output
    every = cli.invoke(args=["tasks", "list"]).output
    assert "team-a~job-1" in every and "team-b~job-1" in every
    assert cli.invoke(args=["tasks", "list", "--tenant", "Team A"]).exit_code == 2


def _value(name: str, a: dict[str, str]) -> str:
    """What to put in a parameter: A's object for a path parameter, something valid for a query one."""
    return {
        "task_ref": a["task_id"],
        "task_ids": a["task_id"],  # GET /tasks (Kling's unified API) asked for A's task
        "index": "0",
        "delivery_id": a["delivery_id"],
        "endpoint": a["endpoint"],
        "endpoint_id": a["endpoint_id"],
        "since": "1d",
        "url": a["hook"],
        "pageNum": "1",
        "pageSize": "500",
    }.get(name, "")


def upstream_ids(simulator: Any) -> list[str]:
    return [task["external_task_id"] for task in simulator.state.tasks()]


def _names(schema: Any, doc: dict[str, Any]) -> set[str]:
    """Every property name a body schema allows, at any depth, its references followed."""
    if isinstance(schema, list):
        return set().union(*(_names(item, doc) for item in schema))
    if not isinstance(schema, dict):
        return set()
    if "$ref" in schema:
        return _names(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]], doc)
    own = set(schema.get("properties", {}))
    return own.union(*(_names(value, doc) for value in schema.values()))


def _naming(path: str, ids: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The path's body naming these video and session ids, and the field that names them."""
    body, field = NAMING_A[path.removeprefix("/kling")]
    text = json.dumps(body).replace("<video>", ids["video"]).replace("<session>", ids["session"])
    return json.loads(text), field


def _refused_as_unknown(service: Service, path: str, a: dict[str, str]) -> tuple[str, str]:
    """B names A's video or session in a create: refused on that field, and answered exactly as for an
    id nobody has. Returns the method and path, as the walk records them."""
    body, field = _naming(path, a)
    theirs = service.http.post(path, json=body, headers=bearer(KEY_B))
    unknown, _ = _naming(path, {"video": "no-such-video", "session": "no-such-session"})
    nobodys = service.http.post(path, json=unknown, headers=bearer(KEY_B))
    assert theirs.status_code == 400, f"post {path} naming team-a's {field} as team-b: {theirs.text}"
    assert [(e["field"], e["code"]) for e in theirs.json()["errors"]] == [(field, "not_yours")]
    assert {**theirs.json(), "request_id": ""} == {**nobodys.json(), "request_id": ""}
    return "post", path


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        if path in NOT_TENANT_DATA:
            continue
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield path, method, operation


def test_walking_every_route_as_another_tenant_finds_and_changes_nothing(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    hook = receiver.script("/team-a-hook", Answer(410))  # A's endpoint: gone, so disabled, a dead letter
    service = stack.start(
        **TENANTS,
        **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1", NOTIFY_WEBHOOK_EVENTS="task.submitted,task.archived"),
        EVENTS_STREAM_S="1",  # the walk reads /v1/events/stream to its end
    )
    simulator.state.set_scenario("team-a~job-1", {"steps": [{"status": "succeed", "delay": 0.2}]})
    assert create(service, KEY_A, "job-1", callback_url=hook).status_code == 200
    assert create(service, KEY_B, "b-1").status_code == 200
    unified = {"prompt": "a kite", "options": {"external_task_id": "unified-a"}}
    a_unified = service.http.post("/text-to-video/kling-3.0", json=unified, headers=bearer(KEY_A))
    assert a_unified.status_code == 200, a_unified.text

    def a_settled() -> list[dict[str, Any]] | None:
        found = service.http.get("/v1/deliveries", params={"task": "job-1"}, headers=bearer(KEY_A)).json()
        view = service.http.get("/v1/tasks/job-1", headers=bearer(KEY_A)).json()["data"]
        done = view["archive_state"] == "archived" and len(found["data"]) == 2
        return found["data"] if done and all(d["status"] != "pending" for d in found["data"]) else None

    a_deliveries = wait_for(a_settled, timeout=30, what="team-a's task archived, its deliveries settled")
    assert {d["status"] for d in a_deliveries} == {"failed", "skipped"}  # 410, then the endpoint disabled
    a_task = service.http.get("/v1/tasks/job-1", headers=bearer(KEY_A)).json()["data"]
    # A managed endpoint at the same URL, for an event none of A's tasks raises here: A's unified task may
    # still be on its way, and its events would rightly reach it, which would count as attempts below.
    managed = service.http.post(
        "/v1/endpoints", json={"url": hook, "event_types": ["task.expired"]}, headers=bearer(KEY_A)
    )
    assert managed.status_code == 201, managed.text
    a_video = a_task["task_result"]["videos"][0]["id"]
    faces = service.http.post("/v1/videos/identify-face", json={"video_id": a_video}, headers=bearer(KEY_A))
    assert faces.status_code == 200, faces.text
    a = {
        "video": a_video,
        "session": faces.json()["data"]["session_id"],
        "task_id": a_task["task_id"],
        "delivery_id": a_deliveries[0]["id"],
        "endpoint": endpoint_id(hook),
        "endpoint_id": managed.json()["data"]["id"],
        "hook": hook,
    }
    secrets_of_a = {
        a["task_id"],
        a["delivery_id"],
        a["endpoint"],
        a["endpoint_id"],
        managed.json()["data"]["secret"],
        a_video,
        a["session"],
        "job-1",
        "unified-a",
        a_unified.json()["data"]["id"],
        *(d["id"] for d in a_deliveries),
    }
    attempts_before = len(receiver.received("/team-a-hook"))
    upstream_before = (upstream_ids(simulator), simulator.state.face_sessions())

    walked = []
    doc = document(service.services.settings, auth_required=True)
    for path, method, operation in _operations(doc):
        params = operation.get("parameters", [])
        url = re.sub(r"\{(\w+)\}", lambda m: _value(m[1], a), path)
        query = {p["name"]: _value(p["name"], a) for p in params if p["in"] == "query"}
        query = {name: value for name, value in query.items() if value}
        body = None
        if "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if named := REFERENCES & _names(schema, doc):
                assert path.removeprefix("/kling") in NAMING_A, f"{method} {path} names {named}: add its body"
                walked.append(_refused_as_unknown(service, path, a))
                continue
            if operation["operationId"].startswith("create"):
                continue  # makes B's own object, naming none of A's: the rest of this test covers it
            assert path.removeprefix("/kling") in BODIES, f"{method} {path} takes a body: add one to BODIES"
            body = BODIES[path.removeprefix("/kling")]
        answer = service.http.request(method.upper(), url, params=query, json=body, headers=bearer(KEY_B))
        walked.append((method, path, answer.status_code))
        if "{" in path:
            assert answer.status_code == 404, f"{method} {url} as team-b: {answer.status_code} {answer.text}"
            continue
        if answer.status_code == 404:
            continue  # e.g. enabling A's endpoint by its URL: not B's, so not found
        assert answer.status_code == 200, f"{method} {url} as team-b: {answer.status_code} {answer.text}"
        leaked = {secret for secret in secrets_of_a if secret in answer.text}
        assert not leaked, f"{method} {url} showed team-b {leaked}"
    assert ("get", "/v1/tasks/{task_ref}/videos/{index}", 404) in walked
    assert ("post", "/v1/deliveries/replay", 200) in walked
    assert ("delete", "/v1/deliveries/disabled-endpoints", 404) in walked
    assert ("post", "/v1/endpoints/{endpoint_id}/test", 404) in walked
    assert ("delete", "/v1/endpoints/{endpoint_id}", 404) in walked
    assert ("patch", "/v1/endpoints/{endpoint_id}", 404) in walked
    assert {("post", "/tasks", 200), ("post", "/kling/tasks", 200)} <= set(walked)
    for path in NAMING_A:
        assert {("post", path), ("post", f"/kling{path}")} <= set(walked)
    # None of B's refused creates reached Kling: no task, no face session.
    assert (upstream_ids(simulator), simulator.state.face_sessions()) == upstream_before

    # A's objects are as they were: nothing replayed, the endpoint still disabled, no new attempt.
    after = service.http.get("/v1/deliveries", params={"task": "job-1"}, headers=bearer(KEY_A)).json()["data"]
    assert [(d["id"], d["status"], d["replays"]) for d in after] == [
        (d["id"], d["status"], d["replays"]) for d in a_deliveries
    ]
    disabled = service.http.get("/v1/deliveries/disabled-endpoints", headers=bearer(KEY_A)).json()["data"]
    assert [d["endpoint"] for d in disabled] == [a["endpoint"]]
    assert len(receiver.received("/team-a-hook")) == attempts_before
    endpoint = service.http.get(f"/v1/endpoints/{a['endpoint_id']}", headers=bearer(KEY_A)).json()["data"]
    assert endpoint["enabled"] and endpoint["description"] == ""  # B's PATCH changed nothing
    assert service.http.get("/v1/deliveries/disabled-endpoints", headers=bearer(KEY_B)).json()["data"] == []

    # An admin sees and reaches both tenants' objects.
    admin = service.http.get(f"/v1/deliveries/{a['delivery_id']}", headers=bearer(KEY_ADMIN))
    assert admin.status_code == 200 and admin.json()["data"]["tenant"] == "team-a"
    assert admin.json()["data"]["external_task_id"] == "job-1"
    video = service.http.get(f"/v1/tasks/{a['task_id']}/videos/0", headers=bearer(KEY_ADMIN))
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    own_video = service.http.get(a_task["archived_videos"][0]["url"], headers=bearer(KEY_A))
    assert own_video.status_code == 200 and own_video.content == video.content


def csrf_token(client: FlaskClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, f"no CSRF token on {path}"
    return match[1]


def sign_in(client: FlaskClient, key: str) -> None:
    signed = client.post("/login", data={"credential": key, "csrf_token": csrf_token(client, "/login")})
    assert signed.status_code == 302, signed.text


def test_the_dashboard_shows_each_tenant_its_own(shared: Service) -> None:
    assert create(shared, KEY_A, "dash-a").status_code == 200
    assert create(shared, KEY_B, "dash-b").status_code == 200
    a_task_id = shared.http.get("/v1/tasks/dash-a", headers=bearer(KEY_A)).json()["data"]["task_id"]

    b = shared.app.test_client()
    sign_in(b, KEY_B)
    listing = b.get("/").text
    assert "dash-b" in listing and "dash-a" not in listing and a_task_id not in listing
    assert "tenant team-b" in listing
    assert b.get(f"/tasks/{a_task_id}").status_code == 404
    assert b.get("/tasks/dash-a").status_code == 404
    assert '<tr class="task' not in b.get(f"/?q={a_task_id}").text  # searched for: no row
    assert '<tr class="task' in b.get("/?q=dash-b").text

    ops = shared.app.test_client()
    sign_in(ops, KEY_ADMIN)
    everything = ops.get("/").text
    assert "dash-a" in everything and "dash-b" in everything and "admin · every tenant" in everything
    page = ops.get("/tasks/team-a~dash-a")
    assert page.status_code == 200 and "team-a" in page.text


def test_an_open_api_has_no_tenants_to_keep_apart(service: Service) -> None:
    """Without client credentials everything is the default tenant's, and callers see all of it."""
    assert service.submit({**IMAGE, "external_task_id": "open-1"}).status_code == 200
    assert service.http.get("/v1/tasks/open-1").json()["data"]["tenant"] == "default"
    assert deliveries(service) == []


def test_a_tenants_callback_costs_what_a_default_tenants_does(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tenant comes with the task record the callback reads anyway: the same Redis commands for a
    task of team-a as for one of the default tenant, news and repeat alike (counted by a Redis of the
    test's own, which nothing else talks to)."""
    from tests.support import PrivateRedis
    from webhook_service.domain.callback_tokens import callback_url_for
    from webhook_service.domain.submission import accept
    from webhook_service.notify import endpoints
    from webhook_service.web.app import create_app

    # The tenants' endpoints, looked up once by the warm-up, stay remembered however slow the machine:
    # an expiry between two counts would add the lookup to one of them.
    monkeypatch.setattr(endpoints, "WANTED_MEMO_S", 3600.0)

    private = PrivateRedis().start()
    try:
        app = create_app({**env, **TENANTS, "REDIS_URL": private.url})
        svc = app.extensions["webhook_service"]
        client = app.test_client()

        def commands(tenant: str, status: str, name: str = "cb-1") -> int:
            task = svc.store.get(upstream_id(tenant, name)) or accept(
                svc, {**IMAGE, "external_task_id": name}, tenant
            )
            token = callback_url_for(svc.settings, task.external_task_id).split("token=")[1]
            body = {"task_id": f"k-{tenant}-{name}", "task_status": status}
            svc.redis.config_resetstat()
            answer = client.post(f"/callbacks/kling?token={token}", json=body)
            assert answer.status_code == 200, answer.text
            stats = svc.redis.info("commandstats")
            return sum(int(entry["calls"]) for name, entry in stats.items() if name != "cmdstat_config")

        # The first callback loads the store's scripts into Redis, and each tenant's first event looks up
        # its webhook endpoints (remembered per process, perhaps already by an earlier test): warm both.
        for tenant in ("ops", "team-a", "default"):
            commands(tenant, "submitted", "warm-up")
        for status in ("processing", "processing"):  # news, then a repeat
            assert commands("team-a", status) == commands("default", status)
        # Whether the tenant has webhook endpoints is remembered: news needs no lookup of them.
        commands("team-a", "processing", "cb-2")
        assert "cmdstat_smembers" not in svc.redis.info("commandstats")
    finally:
        private.stop()
