"""A tenant's endpoint changed or deleted while deliveries to it are under way: a new URL reaches their
retries and replays, a deletion settles what was pending, and an endpoint's dead letters are listed and
replayed on their own. End to end: the service, real `python -m workers` processes, the simulator and
receivers on loopback whose answers each test scripts."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rq.job import Job, JobStatus

from tests import test_notify
from tests.support import wait_for
from tests.test_endpoints import (
    KEY_A,
    KEY_B,
    SUBMITTED,
    call,
    register,
    start,
    submit_as,
    task_deliveries,
    verified,
)
from tests.test_notify import Answer, Receiver, Stack
from webhook_service.cli.common import EXIT_FAILED
from webhook_service.domain.retention import prune
from webhook_service.domain.tenants import upstream_id
from webhook_service.notify.deliveries import GIVE_UP_BATCH
from webhook_service.notify.records import Delivery, DeliveryStatus
from webhook_service.notify.routing import SinkKind

receiver, stack = test_notify.receiver, test_notify.stack
FAILING = [Answer(500)] * 50


def test_a_retry_after_the_url_and_secret_changed_goes_to_the_new_url_signed_with_the_new_secret(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, NOTIFY_RETRY_SCHEDULE_S=",".join(["1"] * 30))
    created = register(service, receiver.script("/old", *FAILING), event_types=SUBMITTED)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    wait_for(lambda: receiver.received("/old"), timeout=30, what="the first attempt, failed, at the old URL")

    moved = call(service, "PATCH", f"/v1/endpoints/{created['id']}", json={"url": receiver.script("/new")})
    assert moved.status_code == 200, moved.text
    rotated = call(service, "POST", f"/v1/endpoints/{created['id']}/rotate-secret").json()["data"]
    (request,) = wait_for(lambda: receiver.received("/new"), timeout=30, what="a retry at the new URL")
    assert verified(rotated["secret"], request)["data"]["external_task_id"] == "job-1"
    assert all(old.at < request.at for old in receiver.received("/old"))
    (delivery,) = wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", created["id"]) if d["status"] == "delivered"],
        timeout=10,
        what="the delivery recorded as delivered",
    )
    assert delivery["attempts"] == len(receiver.received("/old")) + 1
    stored = service.services.deliveries.get(delivery["id"])
    assert stored is not None and stored.target == receiver.url + "/new"  # the record says where it went


def test_a_dead_letter_replayed_after_the_url_changed_goes_to_the_new_url(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, NOTIFY_RETRY_SCHEDULE_S="0.2")
    created = register(service, receiver.script("/old", *FAILING), event_types=SUBMITTED)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    (letter,) = wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", created["id"]) if d["status"] == "failed"],
        timeout=30,
        what="the dead letter",
    )
    assert letter["reason"] == "exhausted" and len(receiver.received("/old")) == 2

    moved = call(service, "PATCH", f"/v1/endpoints/{created['id']}", json={"url": receiver.script("/new")})
    assert moved.status_code == 200, moved.text
    assert call(service, "POST", f"/v1/deliveries/{letter['id']}/replay").status_code == 200
    (request,) = wait_for(lambda: receiver.received("/new"), timeout=30, what="the replay at the new URL")
    assert verified(created["secret"], request)["data"]["external_task_id"] == "job-1"
    assert request.headers["webhook-id"] == letter["webhook_id"]
    wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", created["id"]) if d["status"] == "delivered"],
        timeout=10,
        what="the replay recorded as delivered",
    )
    assert len(receiver.received("/old")) == 2


# --- deleting an endpoint -----------------------------------------------------------------------------

IN_ORDER = ["task.submitted", "task.succeeded", "task.archived"]


def test_deleting_an_endpoint_settles_the_deliveries_waiting_there_and_their_task_can_then_leave(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    """One attempt per 100 s: the task's first event goes, its second waits for the rate and its third
    for the second, neither with a job of its own. Were they left pending when their endpoint and its
    waiting set went, nothing would ever start them, and retention would keep their task for good."""
    service = start(
        stack, workers=2, TASK_RETENTION_S="1", DEAD_LETTER_RETENTION_S="1", PRUNE_INTERVAL_S="3600"
    )
    created = register(service, receiver.script("/limited"), event_types=IN_ORDER, rate_limit_per_s=0.01)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    svc = service.services
    waiting = svc.keys.turn_waiting(created["id"])
    wait_for(lambda: svc.redis.zcard(waiting) == 2, timeout=30, what="two deliveries waiting their turn")
    wait_for(
        lambda: any(d["status"] == "delivered" for d in task_deliveries(service, "job-1", created["id"])),
        timeout=30,
        what="the first one delivered",
    )
    task = upstream_id("team-a", "job-1")
    assert prune(svc).removed == [] and svc.store.get(task) is not None  # held by what is pending

    deleted = call(service, "DELETE", f"/v1/endpoints/{created['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"deleted": True, "dead_letters": 2}
    settled = {d["event_type"]: d for d in task_deliveries(service, "job-1", created["id"])}
    assert settled["task.submitted"]["status"] == "delivered"
    for later in ("task.succeeded", "task.archived"):
        assert (settled[later]["status"], settled[later]["reason"]) == ("failed", "endpoint_deleted")
        assert settled[later]["attempts"] == 0 and settled[later]["waits"] > 0
    assert not svc.redis.exists(waiting) and len(receiver.received("/limited")) == 1

    wait_for(lambda: task in prune(svc).removed, timeout=30, what="the task removed by retention")
    assert svc.store.get(task) is None
    assert list(svc.redis.scan_iter(match=svc.keys.endpoint_deliveries(created["id"]) + "*")) == []
    assert call(service, "GET", f"/v1/deliveries/{settled['task.archived']['id']}").status_code == 404


def test_a_retry_due_after_its_endpoint_was_deleted_does_nothing(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, NOTIFY_RETRY_SCHEDULE_S="3,3,3")
    created = register(service, receiver.script("/down", *FAILING), event_types=SUBMITTED)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")
    (failed_once,) = wait_for(
        lambda: [d for d in task_deliveries(service, "job-1", created["id"]) if d["attempts"] == 1],
        timeout=30,
        what="the first attempt, failed",
    )
    svc = service.services
    stored = svc.deliveries.get(failed_once["id"])
    assert stored is not None and stored.status.value == "pending" and stored.job is not None
    retry = stored.job  # scheduled in RQ for 3 s after that attempt

    deleted = call(service, "DELETE", f"/v1/endpoints/{created['id']}")
    assert deleted.json()["data"] == {"deleted": True, "dead_letters": 1}
    wait_for(
        lambda: Job.fetch(retry, connection=svc.redis).get_status() == JobStatus.FINISHED,
        timeout=30,
        what="the retry's job to have run",
    )
    (letter,) = task_deliveries(service, "job-1", created["id"])
    assert (letter["status"], letter["reason"], letter["attempts"]) == ("failed", "endpoint_deleted", 1)
    assert len(receiver.received("/down")) == 1
    refused = call(service, "POST", f"/v1/deliveries/{letter['id']}/replay")
    assert refused.status_code == 409 and "deleted" in refused.json()["message"]
    endpoint_keys = [svc.keys.endpoint(created["id"]), svc.keys.endpoint_attempts(created["id"])]
    assert not svc.redis.exists(*endpoint_keys)  # the job wrote nothing of the endpoint back


# --- one endpoint's dead letters ----------------------------------------------------------------------


def test_one_endpoints_dead_letters_are_listed_and_replayed_on_their_own(
    stack: Stack, simulator: Any, receiver: Receiver
) -> None:
    service = start(stack, NOTIFY_RETRY_SCHEDULE_S="0.2")
    a = register(service, receiver.script("/a", *FAILING), event_types=SUBMITTED)
    b = register(service, receiver.script("/b", *FAILING), event_types=SUBMITTED)
    theirs = register(service, receiver.script("/theirs"), KEY_B, event_types=SUBMITTED)
    submit_as(service, simulator, KEY_A, "team-a", "job-1")

    def dead_letters(endpoint_id: str) -> list[dict[str, Any]]:
        params = {"status": "failed", "endpoint": endpoint_id}
        answer = call(service, "GET", "/v1/deliveries", params=params)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["data"]
        return found

    (letter_a,) = wait_for(lambda: dead_letters(a["id"]), timeout=30, what="a's dead letter")
    (letter_b,) = wait_for(lambda: dead_letters(b["id"]), timeout=30, what="b's dead letter")
    assert (letter_a["endpoint"], letter_b["endpoint"]) == (a["id"], b["id"])
    every = call(service, "GET", "/v1/deliveries", params={"endpoint": a["id"]}).json()["data"]
    assert [d["id"] for d in every] == [letter_a["id"]]
    of_task = call(service, "GET", "/v1/deliveries", params={"endpoint": b["id"], "task": "job-1"})
    assert [d["id"] for d in of_task.json()["data"]] == [letter_b["id"]]
    for method, path in (("GET", "/v1/deliveries"), ("POST", "/v1/deliveries/replay")):
        asked = {"since": "1h", "endpoint": theirs["id"]}
        not_ours = call(service, method, path, params=asked)
        missing = call(service, method, path, params={**asked, "endpoint": "ep_missing"})
        assert not_ours.status_code == missing.status_code == 404, (path, not_ours.text)
        assert not_ours.json()["code"] == missing.json()["code"]

    receiver.script("/a")  # both receivers fixed: each endpoint's dead letters replayed on their own
    receiver.script("/b")
    cli = service.app.test_cli_runner()
    by_cli = cli.invoke(args=["deliveries", "replay", "--since", "1h", "--endpoint", b["id"]])
    assert by_cli.exit_code == 0 and "replayed 1 failed" in by_cli.output, by_cli.output
    wait_for(lambda: receiver.received("/b")[2:], timeout=30, what="b's dead letter replayed")
    assert dead_letters(a["id"]) == [letter_a] and receiver.received("/a")[2:] == []
    listed = cli.invoke(args=["deliveries", "list", "--endpoint", a["id"], "--json"])
    assert [d["id"] for d in json.loads(listed.output)] == [letter_a["id"]]
    assert cli.invoke(args=["deliveries", "list", "--endpoint", "ep_missing"]).exit_code == EXIT_FAILED

    replayed = call(service, "POST", "/v1/deliveries/replay", params={"since": "1h", "endpoint": a["id"]})
    assert replayed.json()["data"] == {"replayed": [letter_a["id"]], "not_replayed": {}}
    wait_for(
        lambda: [d["status"] for d in task_deliveries(service, "job-1", a["id"])] == ["delivered"],
        timeout=30,
        what="a's dead letter delivered",
    )
    assert len(receiver.received("/a")) == 3 and len(receiver.received("/b")) == 3


def test_deleting_an_endpoint_with_hundreds_pending_settles_each_once(
    stack: Stack, receiver: Receiver
) -> None:
    """An endpoint failing for days has thousands of deliveries pending, which its DELETE settles within
    the request: in batches of GIVE_UP_BATCH, one transaction each. Each pending one becomes a dead
    letter, listed as one; a settled one keeps its own outcome; another endpoint's are left alone."""
    service = start(stack, workers=0)  # nothing attempts them meanwhile
    svc = service.services
    doomed = register(service, receiver.script("/doomed"), event_types=SUBMITTED)
    other = register(service, receiver.script("/other"), event_types=SUBMITTED)

    def pending(endpoint: dict[str, Any], n: int) -> str:
        delivery = Delivery(
            id=f"dl_{endpoint['id']}_{n}",
            event_id=f"ev_{n}",
            event_type="task.submitted",
            external_task_id=upstream_id("team-a", f"job-{n}"),
            sink=SinkKind.WEBHOOK,
            target=endpoint["url"],
            client=True,
            tenant="team-a",
            endpoint=endpoint["id"],
        )
        assert svc.deliveries.create(delivery)
        return delivery.id

    count = 2 * GIVE_UP_BATCH + 51
    doomed_ids = [pending(doomed, n) for n in range(count)]
    elsewhere = pending(other, 0)
    exhausted = svc.deliveries.give_up(doomed_ids[0], doomed_ids[0], "exhausted")  # its first job's id
    assert exhausted is not None and exhausted.status is DeliveryStatus.FAILED

    deleted = call(service, "DELETE", f"/v1/endpoints/{doomed['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"] == {"deleted": True, "dead_letters": count - 1}
    reasons = Counter((d.status, d.reason) for d in map(svc.deliveries.get, doomed_ids) if d is not None)
    assert reasons == Counter(
        {(DeliveryStatus.FAILED, "endpoint_deleted"): count - 1, (DeliveryStatus.FAILED, "exhausted"): 1}
    )
    letters = svc.deliveries.list(DeliveryStatus.FAILED, limit=2 * count)
    assert sorted(d.id for d in letters) == sorted(doomed_ids)
    assert svc.deliveries.list(DeliveryStatus.PENDING, limit=2 * count) == [svc.deliveries.get(elsewhere)]
