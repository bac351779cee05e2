"""Each client sees its own id back in a task's history too: what Kling sent about a task (the create
answer, callbacks, polls) names it by the upstream id `team-a~job-1`, and the API and the dashboard show
those bodies with the client's own `job-1`, for a named tenant and the default one alike. Redis keeps
them as Kling sent them (recovery reads them)."""

from __future__ import annotations

import json
from typing import Any

from tests import test_tenants
from tests.conftest import Service
from tests.support import wait_for
from tests.test_tenants import KEY_A, KEY_ADMIN, KEY_DEFAULT, bearer, create, sign_in
from webhook_service.domain.tenants import with_client_ids

shared = test_tenants.shared  # the tenant tests' fixture: the service with tenants A, B, default, admin


def _called_back(service: Service, key: str, ref: str) -> dict[str, Any]:
    """The task's view once Kling's callback saying it succeeded is in its history."""

    def done() -> dict[str, Any] | None:
        view: dict[str, Any] = service.http.get(f"/v1/tasks/{ref}", headers=bearer(key)).json()["data"]
        sources = {(e.get("source"), e.get("reported_status")) for e in view["history"]}
        return view if ("callback", "succeed") in sources else None

    found: dict[str, Any] = wait_for(done, timeout=20, what=f"{ref}'s callback")
    return found


def _named(value: Any) -> set[str]:
    """Every `external_task_id` in a JSON value, at any depth."""
    if isinstance(value, list):
        return set().union(*(_named(item) for item in value))
    if not isinstance(value, dict):
        return set()
    own = {value["external_task_id"]} if isinstance(value.get("external_task_id"), str) else set()
    return own.union(*(_named(item) for item in value.values()))


def test_history_bodies_show_each_client_its_own_id(shared: Service, simulator: Any) -> None:
    for upstream in ("team-a~job-1", "d-1"):
        simulator.state.set_scenario(upstream, {"steps": [{"status": "succeed", "delay": 0.1}]})
    assert create(shared, KEY_A, "job-1").status_code == 200
    assert create(shared, KEY_DEFAULT, "d-1").status_code == 200

    for key, ref in ((KEY_A, "job-1"), (KEY_DEFAULT, "d-1"), (KEY_ADMIN, "team-a~job-1")):
        view = _called_back(shared, key, ref)
        shown = json.dumps(view)
        assert "team-a~" not in shown and "team-a%7E" not in shown, f"{ref} as {key[:6]}: {shown}"
        bodies = [entry["body"] for entry in view["history"] if "body" in entry]
        assert bodies and _named(bodies) == {ref.removeprefix("team-a~")}, view["history"]

    # Redis keeps what Kling sent: the upstream id is what recovery matches tasks by.
    kept = shared.services.store.history("team-a~job-1")
    assert "team-a~job-1" in json.dumps(kept)

    dashboard = shared.app.test_client()
    sign_in(dashboard, KEY_A)
    page = dashboard.get("/tasks/job-1")
    assert page.status_code == 200 and "team-a~" not in page.text and "team-a%7E" not in page.text
    assert "&#34;external_task_id&#34;: &#34;job-1&#34;" in page.text
    assert "team-a~" not in dashboard.get("/").text  # the task list names it as its client does


def test_only_the_tenants_own_prefix_is_taken_off() -> None:
    body = {"task_info": {"external_task_id": "team-a~job-1"}, "msg": "team-a~job-1 exists", "n": 3}
    assert with_client_ids([body], "team-a") == [
        {"task_info": {"external_task_id": "job-1"}, "msg": "job-1 exists", "n": 3}
    ]
    assert with_client_ids("myteam-a~job-1", "team-a") == "myteam-a~job-1"  # another tenant's id
    assert with_client_ids(body, "default") is body  # its ids went upstream unchanged
