"""Two tenants' callback_urls kept apart: a 410 Gone disables a URL only for the tenant whose delivery got
it, and only that tenant sees it and enables it again; the operator's own sinks are an admin's to see
and enable, not the `default` tenant's; each tenant's deliveries are signed with its own secret, so one
tenant cannot sign an event another tenant's receiver would take."""

from __future__ import annotations

import json
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests import test_notify
from tests.conftest import Service
from tests.support import wait_for
from tests.test_notify import SECRET, Answer, Received, Receiver, Stack, webhooks
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


def deliveries_of(service: Service, headers: dict[str, str], task: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = service.http.get(
        "/v1/deliveries", params={"task": task}, headers=headers
    ).json()["data"]
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
    # From before tenants, it may be the operator's webhook as well as a default tenant's callback_url:
    # it stops both, and only an admin sees it.
    assert disabled(service, A) == [] and disabled(service, DEFAULT) == []
    assert {(d["endpoint"], d["tenant"]) for d in disabled(service, ADMIN)} == {
        (endpoint_id(b_url), "team-b"),
        (endpoint_id(old_url), "default"),
    }

    for key, task, url in [(KEY_A, "a-1", b_url), (KEY_A, "a-2", old_url), (KEY_B, "b-2", old_url)]:
        assert create(service, key, task, callback_url=url).status_code == 200
    assert create(service, KEY_B, "b-1", callback_url=b_url).status_code == 200
    assert create(service, KEY_DEFAULT, "d-1", callback_url=old_url).status_code == 200
    assert [settled(service, A, task)["status"] for task in ("a-1", "a-2")] == ["delivered", "delivered"]
    assert settled(service, B, "b-2")["status"] == "delivered"
    assert settled(service, B, "b-1")["reason"] == "endpoint_disabled"
    assert settled(service, DEFAULT, "d-1")["reason"] == "endpoint_disabled"

    assert enable(service, A, b_url) == 404 and enable(service, A, old_url) == 404
    assert enable(service, DEFAULT, old_url) == 404
    assert enable(service, B, b_url) == 200 and enable(service, ADMIN, old_url) == 200
    assert disabled(service, ADMIN) == []


def test_the_operators_sinks_are_an_admins_not_the_default_tenants(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """The operator's webhook (NOTIFY_WEBHOOK_URLS) answers 410, and so does the default tenant's own
    callback_url: a plain default key sees and enables its own entry only, never the operator's."""
    ops, own = receiver.script("/ops", Answer(410)), receiver.script("/default-hook", Answer(410))
    service = stack.start(**TENANTS, **SUBMITTED_ONLY, NOTIFY_WEBHOOK_URLS=ops)
    assert create(service, KEY_DEFAULT, "d-1", callback_url=own).status_code == 200
    wait_for(lambda: len(disabled(service, ADMIN)) == 2, timeout=30, what="both URLs disabled")
    assert {(d["endpoint"], d["tenant"]) for d in disabled(service, ADMIN)} == {
        (endpoint_id(ops), None),
        (endpoint_id(own), "default"),
    }
    assert [(d["endpoint"], d["tenant"]) for d in disabled(service, DEFAULT)] == [
        (endpoint_id(own), "default")
    ]
    assert disabled(service, A) == []

    by_id = service.http.delete(f"/v1/deliveries/disabled-endpoints/{endpoint_id(ops)}", headers=DEFAULT)
    assert by_id.status_code == 404 and enable(service, DEFAULT, ops) == 404
    assert create(service, KEY_B, "b-1").status_code == 200  # the operator's sink stays off for everyone
    skipped = wait_for(
        lambda: [d for d in deliveries_of(service, ADMIN, "team-b~b-1") if d["status"] == "skipped"],
        timeout=30,
        what="b-1's delivery to the operator's sink skipped",
    )
    assert skipped[0]["reason"] == "endpoint_disabled" and len(receiver.received("/ops")) == 1

    assert enable(service, DEFAULT, own) == 200  # its own: listed, enabled
    assert enable(service, ADMIN, ops) == 200
    assert disabled(service, ADMIN) == []


def verified(secret: str, received: Received) -> dict[str, Any]:
    """The delivery as a Standard Webhooks receiver holding `secret` takes it (raises if it would not)."""
    headers = {k: v for k, v in received.headers.items() if k.startswith("webhook-")}
    body: dict[str, Any] = Webhook(secret).verify(received.body, headers)
    return body


def test_each_tenants_callbacks_are_signed_with_its_own_secret(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    a_hook, ops_hook = receiver.script("/a-pipeline"), receiver.script("/ops")
    service = stack.start(**TENANTS, **SUBMITTED_ONLY, NOTIFY_WEBHOOK_URLS=ops_hook)
    secret_of = {}
    for tenant, headers in [("team-a", A), ("team-b", B), ("default", DEFAULT)]:
        answer = service.http.get("/v1/callback-secret", headers=headers)
        assert answer.status_code == 200 and answer.json()["data"]["tenant"] == tenant
        secret_of[tenant] = answer.json()["data"]["secret"]
    assert secret_of["default"] == SECRET  # receivers set up before tenants keep working
    assert len({*secret_of.values()}) == 3 and all(s.startswith("whsec_") for s in secret_of.values())
    cli = service.app.test_cli_runner().invoke(args=["clients", "callback-secret", "team-a"])
    assert cli.exit_code == 0 and cli.stdout.strip() == secret_of["team-a"]

    assert create(service, KEY_A, "job-1", callback_url=a_hook).status_code == 200
    assert create(service, KEY_B, "job-1", callback_url=a_hook).status_code == 200  # B aims at A's receiver
    assert create(service, KEY_DEFAULT, "job-1", callback_url=a_hook).status_code == 200
    got = wait_for(
        lambda: len(receiver.received("/a-pipeline")) == 3 and receiver.received("/a-pipeline"), 30
    )
    by_tenant = {r.json["data"]["tenant"]: r for r in got}
    assert verified(secret_of["team-a"], by_tenant["team-a"])["data"]["external_task_id"] == "job-1"
    for other in ("team-b", "default"):  # A's receiver, checking with A's secret, refuses both
        with pytest.raises(WebhookVerificationError):
            verified(secret_of["team-a"], by_tenant[other])
        assert verified(secret_of[other], by_tenant[other])["data"]["tenant"] == other
    operators = wait_for(lambda: len(receiver.received("/ops")) == 3 and receiver.received("/ops"), 30)
    assert {verified(SECRET, r)["data"]["tenant"] for r in operators} == {"team-a", "team-b", "default"}


def test_without_a_notify_secret_there_is_no_callback_secret_to_give(services_with: Any) -> None:
    service = services_with(**TENANTS)
    answer = service.http.get("/v1/callback-secret", headers=A)
    assert answer.status_code == 404 and "NOTIFY_WEBHOOK_SECRET is not set" in answer.json()["message"]
    cli = service.app.test_cli_runner().invoke(args=["clients", "callback-secret", "team-a"])
    assert cli.exit_code != 0 and "NOTIFY_WEBHOOK_SECRET is not set" in cli.stderr
    bad = service.app.test_cli_runner().invoke(args=["clients", "callback-secret", "Team A"])
    assert bad.exit_code != 0 and "not a valid client name" in bad.stderr
