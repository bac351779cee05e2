"""Tenants' own webhook endpoints (`/v1/endpoints`) end to end: the service, real `python -m workers`
processes, the simulator and receivers on loopback whose answers each test scripts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from slack_sdk.models.blocks import Block
from standardwebhooks import Webhook, WebhookVerificationError

from tests import test_notify, test_notify_people
from tests.conftest import Service
from tests.support import wait_for
from tests.test_notify import SECRET, Answer, Receiver, Stack, webhooks
from tests.test_notify_people import Mailbox, parts

receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures
mailbox = test_notify_people.mailbox  # a real SMTP server on loopback
KEY_A = "team-a-key-0123456789abcdefgh"
KEY_B = "team-b-key-0123456789abcdefgh"
KEY_ADMIN = "admin-key-0123456789abcdefghi"
TENANTS = {"SERVICE_API_KEYS": f"team-a:{KEY_A},team-b:{KEY_B}", "SERVICE_ADMIN_KEYS": f"ops:{KEY_ADMIN}"}
SUBMITTED = ["task.submitted"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def call(service: Service, method: str, path: str, key: str = KEY_A, **kwargs: Any) -> httpx.Response:
    return service.http.request(method, path, headers=bearer(key), **kwargs)


def register(service: Service, url: str, key: str = KEY_A, **fields: Any) -> dict[str, Any]:
    answer = call(service, "POST", "/v1/endpoints", key, json={"url": url, **fields})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()["data"]
    return created


def start(stack: Stack, workers: int = 1, **overrides: str) -> Service:
    return stack.start(workers, **TENANTS, **webhooks(NOTIFY_ALLOWED_HOSTS="127.0.0.1", **overrides))


def submit_as(service: Service, simulator: Any, key: str, tenant: str, external_id: str) -> None:
    """`tests.test_notify.submit` with a tenant's key: the task ends in `succeed` shortly after."""
    simulator.state.set_scenario(f"{tenant}~{external_id}", {"steps": [{"status": "succeed", "delay": 0.2}]})
    body = {**test_notify.IMAGE, "external_task_id": external_id}
    answer = service.http.post("/v1/videos/image2video", json=body, headers=bearer(key))
    assert answer.status_code == 200, answer.text


def verified(secret: str, request: test_notify.Received) -> dict[str, Any]:
    event: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return event


# --- 1. endpoints of one's own -------------------------------------------------------------------------


def test_an_endpoint_gets_its_tenants_events_signed_with_its_own_secret(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    operator = receiver.script("/operator")
    service = start(stack, NOTIFY_WEBHOOK_URLS=operator, NOTIFY_WEBHOOK_EVENTS="task.submitted")
    a = register(service, receiver.script("/a"), event_types=SUBMITTED, description="team a's pipeline")
    b = register(service, receiver.script("/b"), KEY_B)
    assert a["id"].startswith("ep_") and a["secret"].startswith("whsec_") and a["secret"] != b["secret"]
    assert a["event_types"] == SUBMITTED and b["event_types"][0] == "task.submitted"  # default: every one

    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    (request,) = wait_for(lambda: receiver.received("/a"), timeout=30, what="team-a's endpoint's event")
    event = verified(a["secret"], request)
    assert event["type"] == "task.submitted" and event["data"]["external_task_id"] == "job-1"
    with pytest.raises(WebhookVerificationError):
        verified(SECRET, request)  # not the operator's secret
    operators = wait_for(lambda: receiver.received("/operator"), timeout=30, what="the operator's copy")
    assert {r.headers["webhook-id"] for r in operators} == {request.headers["webhook-id"]}
    verified(SECRET, operators[0])  # the operator's URLs stay, with their own secret

    delivered = wait_for(
        lambda: [
            d
            for d in call(service, "GET", "/v1/deliveries", params={"task": "job-1"}).json()["data"]
            if d.get("endpoint") == a["id"] and d["status"] == "delivered"
        ],
        timeout=30,
        what="the endpoint's delivery recorded as delivered",
    )
    assert delivered[0]["client"] is True
    assert receiver.received("/b") == []  # team-b's endpoint hears nothing of team-a's tasks


def test_endpoints_are_their_tenants_own_and_the_secret_is_kept_encrypted(
    stack: Stack, receiver: Receiver
) -> None:
    service = start(stack, workers=0)
    created = register(service, receiver.script("/a"), event_types=SUBMITTED)
    ep = created["id"]
    assert "secret" not in call(service, "GET", f"/v1/endpoints/{ep}").json()["data"]
    assert [e["id"] for e in call(service, "GET", "/v1/endpoints").json()["data"]] == [ep]
    assert call(service, "GET", "/v1/endpoints", KEY_B).json()["data"] == []
    assert [e["id"] for e in call(service, "GET", "/v1/endpoints", KEY_ADMIN).json()["data"]] == [ep]
    stored = redis.Redis.from_url(service.services.settings.redis_url).hgetall(
        service.services.keys.endpoint(ep)
    )
    assert created["secret"].encode() not in b"".join(stored.values())
    assert created["secret"][6:].encode() not in b"".join(stored.values())

    for method, path, body in (
        ("GET", f"/v1/endpoints/{ep}", None),
        ("PATCH", f"/v1/endpoints/{ep}", {"description": "mine now"}),
        ("POST", f"/v1/endpoints/{ep}/rotate-secret", None),
        ("POST", f"/v1/endpoints/{ep}/test", None),
        ("DELETE", f"/v1/endpoints/{ep}", None),
    ):
        theirs = call(service, method, path, KEY_B, json=body)
        missing = call(service, method, path.replace(ep, "ep_missing"), KEY_A, json=body)
        assert theirs.status_code == missing.status_code == 404, (method, path, theirs.text)
        assert theirs.json()["code"] == missing.json()["code"]
    assert receiver.received("/a") == []  # team-b's test event was never sent

    changed = call(service, "PATCH", f"/v1/endpoints/{ep}", json={"description": "v2", "rate_limit_per_s": 5})
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["description"] == "v2" and changed.json()["data"]["rate_limit_per_s"] == 5
    by_admin = call(service, "PATCH", f"/v1/endpoints/{ep}", KEY_ADMIN, json={"event_types": None})
    assert by_admin.status_code == 200 and len(by_admin.json()["data"]["event_types"]) > 1
    assert call(service, "DELETE", f"/v1/endpoints/{ep}").status_code == 200
    assert call(service, "GET", f"/v1/endpoints/{ep}").status_code == 404
    assert call(service, "GET", "/v1/endpoints", KEY_ADMIN).json()["data"] == []


def test_an_endpoint_at_an_internal_address_or_with_bad_fields_is_refused(
    stack: Stack, receiver: Receiver
) -> None:
    guarded = stack.start(workers=0, **TENANTS, **webhooks())
    internal = call(guarded, "POST", "/v1/endpoints", json={"url": receiver.script("/internal")})
    assert internal.status_code == 400
    (problem,) = internal.json()["errors"]
    assert (
        problem["field"] == "url"
        and problem["code"] == "blocked_address"
        and "loopback" in problem["message"]
    )
    assert call(guarded, "GET", "/v1/endpoints").json()["data"] == []

    bad = call(
        guarded,
        "POST",
        "/v1/endpoints",
        json={"url": "ftp://example.com/", "event_types": ["task.nope"], "rate_limit_per_s": 0, "colour": 1},
    )
    assert bad.status_code == 400
    assert {(p["field"], p["code"]) for p in bad.json()["errors"]} == {
        ("url", "format"),
        ("event_types", "enum"),
        ("rate_limit_per_s", "range"),
        ("colour", "unknown_field"),
    }
    assert call(guarded, "POST", "/v1/endpoints", json={}).json()["errors"][0]["code"] == "missing"

    allowed = start(stack, workers=0)  # NOTIFY_ALLOWED_HOSTS=127.0.0.1: an internal receiver
    assert (
        call(allowed, "POST", "/v1/endpoints", json={"url": receiver.script("/internal")}).status_code == 201
    )


# --- 2. rotating the secret, and a test event ---------------------------------------------------------


def test_after_a_rotation_a_receiver_with_either_secret_accepts_the_messages(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack)
    created = register(service, receiver.script("/a"), event_types=SUBMITTED)
    rotated = call(service, "POST", f"/v1/endpoints/{created['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["data"]
    assert new["secret"].startswith("whsec_") and new["secret"] != created["secret"]
    assert new["old_secret_until"] >= datetime.now(UTC).timestamp() * 1000 + 23.9 * 3600_000
    assert "secret" not in call(service, "GET", f"/v1/endpoints/{created['id']}").json()["data"]

    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    (request,) = wait_for(lambda: receiver.received("/a"), timeout=30, what="the event after the rotation")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verified(created["secret"], request) == verified(new["secret"], request)
    with pytest.raises(WebhookVerificationError):
        verified(SECRET, request)


def test_a_test_event_is_sent_at_once_and_answered_with_the_attempt(stack: Stack, receiver: Receiver) -> None:
    service = start(stack, workers=0)  # no worker: the web process itself sends it
    url = receiver.script("/a", Answer(200, body=b"pong"), Answer(503, body=b"down for maintenance"))
    created = register(service, url, event_types=SUBMITTED)

    first = call(service, "POST", f"/v1/endpoints/{created['id']}/test")
    assert first.status_code == 200, first.text
    attempt = first.json()["data"]
    assert attempt["status_code"] == 200 and attempt["verdict"] == "delivered" and attempt["error"] is None
    assert attempt["response"] == "pong" and attempt["latency_ms"] >= 0
    (request,) = receiver.received("/a")
    ping = verified(created["secret"], request)
    assert ping["type"] == "ping" and ping["data"]["endpoint_id"] == created["id"]

    second = call(service, "POST", f"/v1/endpoints/{created['id']}/test").json()["data"]
    assert second["status_code"] == 503 and second["verdict"] == "retry"
    shown = call(service, "GET", f"/v1/endpoints/{created['id']}").json()["data"]
    assert [a["status_code"] for a in shown["attempt_log"]] == [503, 200]  # newest first
    assert shown["failing_since"] == shown["attempt_log"][0]["at"]


# --- 3. disabled after failing for too long, or after a 410 --------------------------------------------


def endpoint(service: Service, endpoint_id: str, key: str = KEY_A) -> dict[str, Any]:
    answer = call(service, "GET", f"/v1/endpoints/{endpoint_id}", key)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["data"]
    return found


def task_deliveries(service: Service, task: str, endpoint_id: str | None) -> list[dict[str, Any]]:
    found = call(service, "GET", "/v1/deliveries", params={"task": task}).json()["data"]
    return [d for d in found if d.get("endpoint") == endpoint_id]


def test_an_endpoint_failing_for_too_long_is_disabled_told_and_its_deliveries_dead_letters(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    operator = receiver.script("/operator")
    service = start(
        stack,
        workers=2,
        NOTIFY_WEBHOOK_URLS=operator,
        NOTIFY_WEBHOOK_EVENTS="endpoint.disabled",  # nothing of this test's task
        NOTIFY_RETRY_SCHEDULE_S=",".join(["0.5"] * 20),  # far from exhausted when it is disabled
        ENDPOINT_DISABLE_AFTER_S="2",
    )
    bad = register(service, receiver.script("/bad", *[Answer(500)] * 50), event_types=SUBMITTED)
    other = register(service, receiver.script("/other"), event_types=["endpoint.disabled"])
    theirs = register(service, receiver.script("/theirs"), KEY_B)

    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    disabled = wait_for(
        lambda: (found := endpoint(service, bad["id"]))["enabled"] is False and found,
        timeout=30,
        what="the failing endpoint disabled",
    )
    assert disabled["disabled_reason"] == "failing"
    failures = disabled["attempt_log"]
    assert len(failures) >= 2 and all(a["status_code"] == 500 for a in failures)
    assert disabled["disabled_at"] - disabled["failing_since"] >= 2000
    (letter,) = wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", bad["id"]) if d["status"] == "failed"],
        timeout=10,
        what="its pending delivery a dead letter",
    )
    assert letter["reason"] == "endpoint_disabled" and letter["attempts"] == len(failures)

    told = wait_for(lambda: receiver.received("/other"), timeout=30, what="endpoint.disabled to the other")
    event = verified(other["secret"], told[0])
    assert event["type"] == "endpoint.disabled" and event["data"]["id"] == bad["id"]
    assert event["data"]["disabled_reason"] == "failing" and event["data"]["dead_letters"] == 1
    (to_operator,) = wait_for(lambda: receiver.received("/operator"), timeout=30, what="the operator told")
    assert verified(SECRET, to_operator)["type"] == "endpoint.disabled"
    assert to_operator.headers["webhook-id"] == told[0].headers["webhook-id"]
    attempts_while_disabled = len(receiver.received("/bad"))

    receiver.script("/bad")  # it works again
    enabled = call(service, "PATCH", f"/v1/endpoints/{bad['id']}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    shown = enabled.json()["data"]
    assert shown["enabled"] is True and shown["disabled_reason"] is None and shown["failing_since"] is None
    replayed = call(service, "POST", "/v1/deliveries/replay", params={"since": "1h"}).json()["data"]
    assert letter["id"] in replayed["replayed"]
    wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", bad["id"]) if d["status"] == "delivered"],
        timeout=30,
        what="the dead letter delivered after the endpoint was enabled",
    )
    assert len(receiver.received("/bad")) == attempts_while_disabled + 1
    assert receiver.received("/theirs") == [] and theirs["id"] != bad["id"]  # another tenant's: not told


def test_an_endpoint_that_answers_410_is_disabled_and_new_events_skip_it(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack)
    gone = register(service, receiver.script("/gone", Answer(410)), event_types=SUBMITTED)
    other = register(service, receiver.script("/other"), event_types=["endpoint.disabled"])

    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    told = wait_for(lambda: receiver.received("/other"), timeout=30, what="endpoint.disabled")
    assert verified(other["secret"], told[0])["data"]["disabled_reason"] == "gone"
    assert endpoint(service, gone["id"])["enabled"] is False
    (first,) = task_deliveries(service, "job-1", gone["id"])
    assert first["status"] == "failed" and first["reason"] == "gone"

    submit_as(service, simulator, KEY_A, "team-a", "job-2")
    (skipped,) = wait_for(lambda: task_deliveries(service, "job-2", gone["id"]), timeout=30, what="job-2's")
    assert skipped["status"] == "skipped" and skipped["reason"] == "endpoint_disabled"
    refused = call(service, "POST", f"/v1/deliveries/{skipped['id']}/replay")
    assert refused.status_code == 409 and "PATCH /v1/endpoints/" in refused.json()["message"]
    assert len(receiver.received("/gone")) == 1


def test_the_operators_slack_and_email_hear_of_a_disabled_endpoint(
    stack: Stack, simulator: Any, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    """A person on call reads it: which endpoint, whose, why, how many dead letters, where to act. The
    endpoint's query (a receiver's token often lives there) never reaches the channel or the mailbox."""
    box, port = mailbox
    only_this = "endpoint.disabled"  # no task event: the one message each is the endpoint's
    service = start(
        stack,
        SLACK_WEBHOOK_URL=receiver.script("/slack"),
        SLACK_EVENTS=only_this,
        SMTP_URL=f"smtp://127.0.0.1:{port}",
        NOTIFY_EMAIL_FROM="kling@example.com",
        NOTIFY_EMAIL_TO="ops@example.com",
        EMAIL_EVENTS=only_this,
    )
    gone_url = receiver.script("/gone", Answer(410)) + "?token=receiver-s3cret"
    gone = register(service, gone_url, event_types=SUBMITTED, description="team a's <b>renders</b>")

    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    (slack,) = wait_for(lambda: receiver.received("/slack"), timeout=30, what="the Slack message")
    (sender, recipients, mail) = wait_for(lambda: box.messages, timeout=30, what="the email")[0]

    message = slack.json
    for block in message["blocks"]:
        Block.parse(block).validate_json()
    assert message["text"].startswith("🚫 Endpoint disabled: Deliveries to http://127.0.0.1:")
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in message["blocks"][2]["fields"]}
    assert fields["*Tenant*"] == "team-a" and fields["*Dead letters*"] == "0"
    assert fields["*Description*"] == "team a's &lt;b&gt;renders&lt;/b&gt;"
    assert any("410 Gone" in b.get("text", {}).get("text", "") for b in message["blocks"])
    context = message["blocks"][-1]["elements"][0]["text"]
    assert f"/endpoints|{gone['id']}>" in context and "`endpoint.disabled`" in context

    assert (sender, recipients) == ("kling@example.com", ["ops@example.com"])
    assert mail["Subject"].startswith("Endpoint disabled: Deliveries to http://127.0.0.1:")
    text, markup = parts(mail)
    assert "Tenant: team-a" in text and "410 Gone" in text and f"Endpoint {gone['id']}: " in text
    assert "team a&#x27;s &lt;b&gt;renders&lt;/b&gt;" in markup
    assert "/gone (tenant team-a)" in text and "/gone (tenant team-a)" in message["text"]
    for said in (json.dumps(message), text, markup, mail["Subject"]):
        assert "receiver-s3cret" not in said


# --- 4. a slow endpoint never delays another -----------------------------------------------------------


def test_a_hanging_endpoint_holds_one_worker_at_most_and_never_delays_another(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """Two workers; the hanging endpoint's deliveries are queued before the quick one's. Without the
    one-at-a-time bound its second delivery would take the second worker, and the quick endpoint's
    later deliveries would wait for the hang to be cut."""
    service = start(stack, workers=2, NOTIFY_TIMEOUT_S="4")
    register(service, receiver.script("/slow", *[Answer(200, delay=30)] * 10), event_types=SUBMITTED)
    register(service, receiver.script("/fast"), event_types=SUBMITTED)

    for n in range(3):
        submit_as(service, simulator, KEY_A, "team-a", f"job-{n}")
    fast = wait_for(lambda: len(found := receiver.received("/fast")) == 3 and found, timeout=30, what="3")
    hanging = receiver.received("/slow")
    assert len(hanging) == 1  # one attempt at the hanging endpoint at a time
    assert max(r.at for r in fast) < hanging[0].at + 4  # all of them while it still hangs


# --- 5. a rate limit per endpoint ---------------------------------------------------------------------


def test_deliveries_beyond_the_rate_limit_wait_their_turn_and_none_fails(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, workers=2)
    limited = register(service, receiver.script("/limited"), event_types=SUBMITTED, rate_limit_per_s=0.5)

    for n in range(4):
        submit_as(service, simulator, KEY_A, "team-a", f"job-{n}")
    arrived = wait_for(
        lambda: len(found := receiver.received("/limited")) == 4 and found, timeout=40, what="4"
    )
    times = sorted(r.at for r in arrived)
    assert times[-1] - times[0] > 4  # one every 2 s: 6 s from the first to the fourth
    found = [d for n in range(4) for d in task_deliveries(service, f"job-{n}", limited["id"])]
    assert [(d["status"], d["attempts"]) for d in found] == [("delivered", 1)] * 4  # waits are no failures
    assert sum(d["waits"] for d in found) > 0 and endpoint(service, limited["id"])["failing_since"] is None


# --- 6. a task's events in order ----------------------------------------------------------------------


def test_a_tasks_events_reach_an_endpoint_in_the_order_they_happened(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """The first event fails twice; the later ones are raised meanwhile and wait for it."""
    service = start(stack, workers=2, NOTIFY_RETRY_SCHEDULE_S="1,1,1")
    url = receiver.script("/ordered", Answer(500), Answer(500))
    register(service, url, event_types=["task.submitted", "task.succeeded", "task.archived"])

    submit_as(service, simulator, KEY_A, "team-a", "job-1")

    def arrived() -> list[str]:
        return [r.json["type"] for r in receiver.received("/ordered")]

    types = wait_for(lambda: "task.archived" in (found := arrived()) and found, timeout=40, what="archived")
    assert types == ["task.submitted"] * 3 + ["task.succeeded", "task.archived"]
