"""Two tenants' callback_urls kept apart: a 410 Gone disables a URL only for the tenant whose delivery got
it, and only that tenant sees it and enables it again."""

from __future__ import annotations

import json
from typing import Any

from tests import test_notify
from tests.conftest import Service
from tests.support import wait_for
from tests.test_notify import Answer, Receiver, Stack, webhooks
from tests.test_tenants import KEY_A, KEY_ADMIN, KEY_B, KEY_DEFAULT, TENANTS, bearer, create
from webhook_service.notify.records import endpoint_id

receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures
A, B, DEFAULT, ADMIN = bearer(KEY_A), bearer(KEY_B), bearer(KEY_DEFAULT), bearer(KEY_ADMIN)
SUBMITTED_ONLY = webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1", NOTIFY_WEBHOOK_EVENTS="task.submitted")


def settled(service: Service, headers: dict[str, str], task: str) -> dict[str, Any]:
    """The task's one delivery, once it is no longer pending."""

    def done() -> dict[str, Any] | None:
        found = service.http.get("/v1/deliveries", params={"task": task}, headers=headers).json()["data"]
        return found[0] if found and found[0]["status"] != "pending" else None

    found: dict[str, Any] = wait_for(done, timeout=30, what=f"the delivery of {task}")
    return found


def disabled(service: Service, headers: dict[str, str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = service.http.get(
        "/v1/deliveries/disabled-endpoints", headers=headers
    ).json()["data"]
    return found


def enable(service: Service, headers: dict[str, str], url: str) -> int:
    answer = service.http.delete("/v1/deliveries/disabled-endpoints", params={"url": url}, headers=headers)
    return answer.status_code


def test_a_410_disables_a_shared_url_for_the_tenant_that_got_it_only(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    shared = receiver.script("/shared", Answer(410))  # B's delivery comes first and is told 410
    service = stack.start(**TENANTS, **SUBMITTED_ONLY)
    assert create(service, KEY_B, "b-1", callback_url=shared).status_code == 200
    assert settled(service, B, "b-1")["reason"] == "gone"
    assert [(d["endpoint"], d["tenant"]) for d in disabled(service, B)] == [(endpoint_id(shared), "team-b")]

    assert create(service, KEY_A, "a-1", callback_url=shared).status_code == 200
    assert settled(service, A, "a-1")["status"] == "delivered"
    assert len(receiver.received("/shared")) == 2
    assert disabled(service, A) == [] and disabled(service, DEFAULT) == []
    assert enable(service, A, shared) == 404  # B's entry is not A's to lift

    assert create(service, KEY_B, "b-2", callback_url=shared).status_code == 200
    assert settled(service, B, "b-2")["reason"] == "endpoint_disabled"  # still off for B
    assert [d["tenant"] for d in disabled(service, ADMIN)] == ["team-b"]
    assert enable(service, B, shared) == 200
    assert disabled(service, B) == [] and disabled(service, ADMIN) == []
    assert create(service, KEY_B, "b-3", callback_url=shared).status_code == 200
    assert settled(service, B, "b-3")["status"] == "delivered"


def test_entries_from_before_owners_stay_with_the_owner_their_value_names(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """The hash once held one entry per URL; its value named the tenant (null: the operator's sinks;
    absent: written before tenants, when every callback_url was the default tenant's)."""
    b_url, old_url = receiver.script("/b"), receiver.script("/old")
    service = stack.start(**TENANTS, **SUBMITTED_ONLY)
    why = {"disabled_at": 1, "status_code": 410, "delivery_id": "dlv_old"}
    service.services.redis.hset(
        service.services.keys.disabled_endpoints,
        mapping={b_url: json.dumps({**why, "tenant": "team-b"}), old_url: json.dumps(why)},
    )
    assert [d["endpoint"] for d in disabled(service, B)] == [endpoint_id(b_url)]
    assert [(d["endpoint"], d["tenant"]) for d in disabled(service, DEFAULT)] == [
        (endpoint_id(old_url), "default")
    ]
    assert disabled(service, A) == []

    for key, task, url in [(KEY_A, "a-1", b_url), (KEY_A, "a-2", old_url), (KEY_B, "b-2", old_url)]:
        assert create(service, key, task, callback_url=url).status_code == 200
    assert create(service, KEY_B, "b-1", callback_url=b_url).status_code == 200
    assert create(service, KEY_DEFAULT, "d-1", callback_url=old_url).status_code == 200
    assert [settled(service, A, task)["status"] for task in ("a-1", "a-2")] == ["delivered", "delivered"]
    assert settled(service, B, "b-2")["status"] == "delivered"
    assert settled(service, B, "b-1")["reason"] == "endpoint_disabled"
    assert settled(service, DEFAULT, "d-1")["reason"] == "endpoint_disabled"

    assert enable(service, A, b_url) == 404 and enable(service, A, old_url) == 404
    assert enable(service, B, b_url) == 200 and enable(service, DEFAULT, old_url) == 200
    assert disabled(service, ADMIN) == []
