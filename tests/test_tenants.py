"""Tenants kept apart: two teams share one service and one Kling account, each with its own ids, and
neither sees the other's tasks, through the API, the CLI or the dashboard. An admin sees everyone's.
The walks through every route, of the OpenAPI document and of the dashboard, are
test_tenant_walk_api.py and test_tenant_walk_dashboard.py; the history's ids, test_tenant_history.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

from tests.conftest import Service
from tests.test_notify import deliveries
from webhook_service.config import ConfigError, Settings
from webhook_service.domain.tenants import EVERYONE, Scope, client_id, tenant_of, upstream_id

KEY_A = "team-a-key-0123456789abcdefgh"
KEY_B = "team-b-key-0123456789abcdefgh"
KEY_DEFAULT = "default-key-0123456789abcdefg"
KEY_ADMIN = "admin-key-0123456789abcdefghi"
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a red fox running through snow"}
TENANTS = {
    "SERVICE_API_KEYS": f"team-a:{KEY_A},team-b:{KEY_B},{KEY_DEFAULT}",
    "SERVICE_ADMIN_KEYS": f"ops:{KEY_ADMIN}",
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
