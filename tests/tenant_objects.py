"""Team A's objects, made through the API, for the walks that prove team B reaches none of them
(test_tenant_walk_api.py, test_tenant_walk_dashboard.py): a finished and archived task with an archived
input image, its deliveries settled (one a dead letter, its callback_url disabled by a 410), a managed
webhook endpoint, a face session, a unified task; what B must never see of them; and a snapshot of
them, which the walk compares before and after to prove B changed nothing."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.conftest import Service
from tests.support import wait_for
from tests.test_dashboard_browser import gradient_png
from tests.test_notify import Answer, Receiver, Stack, webhooks
from tests.test_tenants import KEY_A, KEY_B, TENANTS, bearer, create
from webhook_service.notify.records import endpoint_id

A, B = bearer(KEY_A), bearer(KEY_B)


@dataclass
class TeamA:
    service: Service
    receiver: Receiver
    task_id: str  # job-1's Kling task_id
    video: str
    session: str
    delivery_id: str  # a dead letter
    endpoint: str  # its disabled callback_url's `ep_...`
    endpoint_id: str  # its managed webhook endpoint
    hook: str
    unified_id: str
    secrets: set[str] = field(default_factory=set)

    def snapshot(self) -> dict[str, Any]:
        """Everything of A's that B might change: its deliveries, its disabled and managed endpoints,
        its task, what its receiver got."""
        http = self.service.http
        return {
            "deliveries": http.get("/v1/deliveries", params={"task": "job-1"}, headers=A).json()["data"],
            "disabled": http.get("/v1/deliveries/disabled-endpoints", headers=A).json()["data"],
            "endpoints": http.get("/v1/endpoints", headers=A).json()["data"],
            "task": http.get("/v1/tasks/job-1", headers=A).json()["data"],
            "attempts": len(self.receiver.received("/team-a-hook")),
        }

    def leaked(self, answer: httpx.Response, sent: str) -> set[str]:
        """What of A's an answer to B shows, beyond what B itself sent (an error may quote it)."""
        return {secret for secret in self.secrets if secret in answer.text and secret not in sent}


def team_a(stack: Stack, simulator: Any, receiver: Receiver) -> TeamA:
    hook = receiver.script("/team-a-hook", Answer(410))  # A's endpoint: gone, so disabled, a dead letter
    service = stack.start(
        **TENANTS,
        **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1", NOTIFY_WEBHOOK_EVENTS="task.submitted,task.archived"),
        EVENTS_STREAM_S="1",  # the walk reads /v1/events/stream to its end
    )
    simulator.state.set_scenario("team-a~job-1", {"steps": [{"status": "succeed", "delay": 0.2}]})
    image = base64.b64encode(gradient_png()).decode()  # archived: the dashboard shows it as a thumbnail
    assert create(service, KEY_A, "job-1", callback_url=hook, image=image).status_code == 200
    assert create(service, KEY_B, "b-1").status_code == 200
    unified = {"prompt": "a kite", "options": {"external_task_id": "unified-a"}}
    a_unified = service.http.post("/text-to-video/kling-3.0", json=unified, headers=A)
    assert a_unified.status_code == 200, a_unified.text

    def a_settled() -> list[dict[str, Any]] | None:
        found = service.http.get("/v1/deliveries", params={"task": "job-1"}, headers=A).json()["data"]
        view = service.http.get("/v1/tasks/job-1", headers=A).json()["data"]
        done = view["archive_state"] == "archived" and len(found) == 2
        return found if done and all(d["status"] != "pending" for d in found) else None

    a_deliveries = wait_for(a_settled, timeout=30, what="team-a's task archived, its deliveries settled")

    def b_archived() -> bool:  # what B sees must not change under the walk for a reason of its own
        return bool(
            service.http.get("/v1/tasks/b-1", headers=B).json()["data"]["archive_state"] == "archived"
        )

    wait_for(b_archived, timeout=30, what="team-b's task archived")
    assert {d["status"] for d in a_deliveries} == {"failed", "skipped"}  # 410, then the endpoint disabled
    a_task = service.http.get("/v1/tasks/job-1", headers=A).json()["data"]
    # A managed endpoint at the same URL, for an event none of A's tasks raises here: A's unified task may
    # still be on its way, and its events would rightly reach it, which would count as attempts.
    managed = service.http.post(
        "/v1/endpoints", json={"url": hook, "event_types": ["task.expired"]}, headers=A
    )
    assert managed.status_code == 201, managed.text
    video = a_task["task_result"]["videos"][0]["id"]
    faces = service.http.post("/v1/videos/identify-face", json={"video_id": video}, headers=A)
    assert faces.status_code == 200, faces.text
    a = TeamA(
        service=service,
        receiver=receiver,
        task_id=a_task["task_id"],
        video=video,
        session=faces.json()["data"]["session_id"],
        delivery_id=next(d["id"] for d in a_deliveries if d["status"] == "failed"),
        endpoint=endpoint_id(hook),
        endpoint_id=managed.json()["data"]["id"],
        hook=hook,
        unified_id=a_unified.json()["data"]["id"],
    )
    a.secrets = {
        a.task_id,
        a.endpoint,
        a.endpoint_id,
        managed.json()["data"]["secret"],
        a.video,
        a.session,
        a.unified_id,
        "job-1",
        "unified-a",
        "team-a",
        *(d["id"] for d in a_deliveries),
    }
    return a
