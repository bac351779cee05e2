"""Retention: a settled task leaves Redis with everything it owns, an open one never does, a dead letter
holds its task while it can still be replayed, and a query afterwards says what happened.

The service, real workers (their periodic pruning ticks included), the simulator and a webhook receiver
on loopback; retention in seconds so the tests see it happen."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rq import Queue
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from tests import test_endpoints as endpoint_tests
from tests import test_notify
from tests.conftest import Service, make_service
from tests.support import PrivateRedis, wait_for
from tests.test_notify import SECRET, Answer, Receiver, Stack, submit
from webhook_service import jobs
from webhook_service.config import Settings
from webhook_service.domain.clock import now_ms
from webhook_service.domain.retention import RECHECK_S, prune
from webhook_service.domain.tasks import Status, Task
from webhook_service.integrations.storage import LocalStorage
from webhook_service.keys import Keys
from webhook_service.services import Services

FAST = {"PRUNE_INTERVAL_S": "1", "RECONCILE_INTERVAL_S": "1"}


receiver, stack = test_notify.receiver, test_notify.stack  # the webhook tests' fixtures


def keys_about(service: Service, *ids: str) -> list[str]:
    """Every key of the service that names one of the ids (RQ's own aside, and the removal notices)."""
    everything = [k.decode() for k in service.services.redis.scan_iter(count=1000)]
    own = [k for k in everything if not k.startswith("rq:") and ":removed:" not in k]
    return sorted(k for k in own if any(i in k for i in ids))


def index_members(service: Service, *ids: str) -> list[str]:
    """Index entries (sorted sets and hashes of the service) that still name one of the ids."""
    connection = service.services.redis
    found = []
    for key in connection.scan_iter(match=f"{Keys().prefix}*", count=1000):
        kind = connection.type(key)
        if kind == b"zset":
            members = [m.decode() for m in connection.zrange(key, 0, -1)]
        elif kind == b"hash":
            members = [m.decode() for m in connection.hkeys(key)]
        elif kind == b"set":
            members = [m.decode() for m in connection.smembers(key)]
        else:
            continue
        found += [f"{key.decode()}:{m}" for m in members if any(i in m for i in ids)]
    return found


# Keys a task adds that are not the task's: counters by day or hour (usage, activity), kept for their own
# time, naming no task; the tenant's event log, whose last id stays to check readers' cursors against;
# and the removal notices, which say what happened to the task for another retention period. And keys
# that come and go with the service's own work whatever the tasks, naming none: the lock of a
# reconciliation pass, held while one runs (seen once: taken after the task's removal, not before it),
# and the mark of a dispatch wanted.
NOT_THE_TASKS = (
    "usage:",
    "usage-tenants",
    "activity:",
    "activity-tenants",
    "events:",
    "removed:",
    "reconcile-lock",
    "dispatch-wanted",
)


def key_names(service: Service) -> set[str]:
    """Every key of the service (RQ's own aside: its job records expire by themselves)."""
    return {k.decode() for k in service.services.redis.scan_iter(count=1000) if not k.startswith(b"rq:")}


def mentions(service: Service, ids: set[str]) -> list[str]:
    """Every place in the service's keyspace that names one of the ids: a key's name, a string's value,
    a list's item, a set's or sorted set's member, a hash's field or value, a stream entry's values."""
    connection, found = service.services.redis, []
    for key in sorted(key_names(service)):
        kind = connection.type(key)
        if kind == b"string":
            parts = [connection.get(key) or b""]
        elif kind == b"list":
            parts = connection.lrange(key, 0, -1)
        elif kind == b"set":
            parts = list(connection.smembers(key))
        elif kind == b"zset":
            parts = connection.zrange(key, 0, -1)
        elif kind == b"hash":
            parts = [p for pair in connection.hgetall(key).items() for p in pair]
        else:  # a stream
            parts = [v for _, fields in connection.xrange(key) for v in fields.values()]
        texts = [key, *(p.decode(errors="replace") for p in parts)]
        found += [f"{key}: {i}" for i in ids if any(i in t for t in texts)]
    return found


def settled_deliveries(service: Service, external_id: str) -> list[dict[str, Any]]:
    """The task's deliveries once none is pending; none before."""
    found = service.http.get("/v1/deliveries", params={"task": external_id}).json()["data"]
    return [] if any(d["status"] == "pending" for d in found) else found


def test_a_pruned_task_leaves_nothing_of_itself_in_redis(stack: Stack, simulator, receiver: Receiver) -> None:
    """Its keys, its deliveries (one delivered after a failed attempt, one a dead letter), their
    attempts, its events, its entries in the event log, every index member naming any of them, and its
    place among a sink's waiting deliveries and that sink's turn (notify/turns.py): the keyspace after
    its removal is the keyspace before it existed, but for counters that name no task."""
    service = stack.start(
        2,  # one worker is held by the hanging attempt
        TASK_RETENTION_S="5",  # past the hang: a pass that finds a delivery pending looks a minute later
        DEAD_LETTER_RETENTION_S="2",
        NOTIFY_WEBHOOK_URLS=",".join(
            [receiver.script("/flaky", Answer(500)), receiver.script("/down", *[Answer(500)] * 20)]
        ),
        NOTIFY_WEBHOOK_EVENTS="task.submitted,task.archived",
        NOTIFY_WEBHOOK_SECRET=SECRET,
        NOTIFY_RETRY_SCHEDULE_S="0.2",
        NOTIFY_TIMEOUT_S="60",  # the hanging attempt lasts until the test lets it answer
        **FAST,
    )
    submit(service, simulator, "stays-open", status="processing")
    wait_for(lambda: len(settled_deliveries(service, "stays-open")) == 2, timeout=60, what="its deliveries")
    held = threading.Event()
    receiver.script("/flaky", Answer(500, held=held))  # the next task's first attempt there hangs, then fails
    keys = Keys()
    bookkeeping = {keys.reconcile_passes, keys.retention_backfill, keys.tenant_backfill}
    wait_for(lambda: bookkeeping <= key_names(service), what="the periodic passes' first runs")
    before = key_names(service)

    submit(service, simulator, "retention-goes", status="succeed")
    svc = service.services
    # While the first attempt at /flaky hangs, holding that sink's turn, the task's other event there
    # waits its turn: both are in the keyspace the check reads.
    waiting = wait_for(
        lambda: next(
            (d for d in svc.deliveries.of_task("retention-goes") if d.waits and d.target.endswith("/flaky")),
            None,
        ),
        timeout=45,
        what="a delivery waiting its turn behind the hanging attempt",
    )
    at_flaky = [d for d in svc.deliveries.of_task("retention-goes") if d.target.endswith("/flaky")]
    hanging = next(d.id for d in at_flaky if d.id != waiting.id)
    turn = waiting.turn_target
    seen = set(mentions(service, {waiting.id, hanging}))
    assert f"{keys.turn_waiting(turn)}: {waiting.id}" in seen  # among the sink's waiting deliveries
    assert f"{keys.sink_busy(turn)}: {hanging}" in seen  # the sink's turn, held by the hanging attempt
    held.set()
    settled = wait_for(
        lambda: len(found := settled_deliveries(service, "retention-goes")) == 4 and found,
        timeout=60,
        what="its four deliveries settled",
    )
    statuses = sorted((d["status"], d["attempts"]) for d in settled)
    assert ("failed", 2) in statuses and ("delivered", 2) in statuses  # a dead letter; a retried success
    task = svc.store.get("retention-goes")
    assert task is not None and task.task_id and task.task_result
    ids = {
        "retention-goes",
        task.task_id,
        *(v["id"] for v in task.task_result["videos"]),
        *(d["id"] for d in settled),
        *(d["event_id"] for d in settled),
        *(e.decode() for e in svc.redis.lrange(keys.task_events("retention-goes"), 0, -1)),
    }
    seen = mentions(service, ids)  # the check sees the task everywhere it is, index members included
    assert any(m.startswith(f"{keys.deliveries('failed')}:") for m in seen)
    assert any(m.startswith(f"{keys.events('default')}:") for m in seen)

    # Within the retention and a pass, or RECHECK_S later if a loaded machine kept a delivery pending
    # past the task's time.
    removal_s = 5 + RECHECK_S + 30
    wait_for(lambda: svc.store.get("retention-goes") is None, timeout=removal_s, what="the task's removal")
    left = key_names(service) - before
    notices = {keys.removed("retention-goes"), keys.removed(task.task_id)}
    assert notices <= left
    assert sorted(k for k in left if not k.startswith(tuple(keys.prefix + n for n in NOT_THE_TASKS))) == []
    assert [m for m in mentions(service, ids) if not m.startswith(keys.removed(""))] == []
    assert svc.redis.xlen(keys.events("default")) == len(
        svc.redis.lrange(keys.task_events("stays-open"), 0, -1)
    )
    assert svc.store.get("stays-open") is not None
    answer = service.http.get("/v1/videos/image2video/retention-goes")
    assert answer.status_code == 404
    assert "removed" in answer.json()["message"] and "TASK_RETENTION_S" in answer.json()["message"]
    by_task_id = service.http.get(f"/v1/tasks/{task.task_id}")
    assert by_task_id.status_code == 404 and "removed" in by_task_id.json()["message"]
    never = service.http.get("/v1/videos/image2video/never-was")
    assert never.status_code == 404 and "removed" not in never.json()["message"]
    listed = service.http.get("/v1/videos/image2video").json()["data"]
    assert [t["task_info"]["external_task_id"] for t in listed] == ["stays-open"]


def test_open_tasks_never_leave(service: Service, simulator) -> None:
    submit(service, simulator, "open", status="processing")
    wait_for(lambda: service.task("open")["task_status"] == "processing")
    service.services.redis.zadd(Keys().retention, {"open": 0})  # even when something asks too early
    report = prune(service.services)
    assert report.removed == [] and report.postponed == ["open"]
    assert service.services.store.get("open") is not None


def test_a_dead_letter_holds_its_task_until_it_can_no_longer_be_replayed(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    service = stack.start(
        TASK_RETENTION_S="0.5",
        DEAD_LETTER_RETENTION_S="4",
        PRUNE_INTERVAL_S="3600",  # the test prunes itself, to see each step
        NOTIFY_WEBHOOK_URLS=receiver.script("/gone", Answer(status=410)),
        NOTIFY_WEBHOOK_SECRET=SECRET,
    )
    submit(service, simulator, "dead-letter", status="failed")
    (dead,) = wait_for(
        lambda: service.http.get("/v1/deliveries", params={"status": "failed"}).json()["data"],
        timeout=30,
        what="the dead letter",
    )
    failed_at = dead["updated_at"] / 1000
    wait_for(lambda: time.time() - failed_at > 1)  # past the task's own retention
    assert prune(service.services).removed == []
    assert service.services.store.get("dead-letter") is not None  # it can still be replayed

    removed = wait_for(lambda: prune(service.services).removed, timeout=15, what="removal after 4 s")
    assert removed == ["dead-letter"] and time.time() - failed_at >= 4
    assert keys_about(service, "dead-letter") == []


def test_a_succeeded_task_waits_for_its_archive(stack: Stack, env: dict[str, str], simulator) -> None:
    service, server, _ = make_service(env, TASK_RETENTION_S="0.5")  # no worker: no archive yet
    try:
        submit(service, simulator, "archive-pending", status="succeed")
        wait_for(lambda: service.task("archive-pending")["task_status"] == "succeed")
        wait_for(lambda: service.services.redis.zscore(Keys().retention, "archive-pending") is not None)
        wait_for(lambda: (service.services.redis.zscore(Keys().retention, "archive-pending") or 0) < now_ms())
        assert prune(service.services).postponed == ["archive-pending"]
        archiving = stack.start(TASK_RETENTION_S="0.5", **FAST)
        wait_for(
            lambda: not keys_about(archiving, "archive-pending"), timeout=60, what="archive, then removal"
        )
        assert list(Path(env["ARCHIVE_URL"]).rglob("*.mp4"))  # the archive keeps the video
    finally:
        server.stop()


def test_tasks_finished_before_retention_existed_are_found_once(service: Service) -> None:
    svc = service.services
    old = int(time.time() * 1000) - 90 * 86400 * 1000
    for n in range(5):
        task = Task(f"old-{n}", status=Status.FAILED, created_at=old + n, updated_at=old + n)
        svc.store.create(task, request={})
    svc.store.create(Task("old-open", status=Status.PROCESSING, created_at=old, updated_at=old), request={})
    svc.redis.delete(Keys().retention, Keys().retention_backfill)  # as a Redis from before retention

    removed = prune(svc).removed
    assert sorted(removed) == [f"old-{n}" for n in range(5)]
    assert svc.store.get("old-open") is not None
    assert svc.redis.get(Keys().retention_backfill) == b"done"
    assert prune(svc).removed == []  # a second pass finds nothing more, and walks nothing again


def test_archive_retention_removes_whole_days_only(tmp_path: Path) -> None:
    """A day folder goes once its day has ended before the cutoff; the cutoff's own day stays. Fixed dates:
    a cutoff relative to the clock would make the answer depend on the hour the test runs."""
    storage = LocalStorage(tmp_path)
    cutoff = datetime(2024, 3, 10, 7, 0, tzinfo=UTC).timestamp()  # early in the day, as CI often is
    old_day = tmp_path / "2020/01/01/task-a"
    day_before = tmp_path / "2024/03/09/task-b"
    cutoff_day = tmp_path / "2024/03/10/task-c"
    later_day = tmp_path / "2024/03/11/task-d"
    for folder in (old_day, day_before, cutoff_day, later_day):
        folder.mkdir(parents=True)
        (folder / "video.mp4").write_bytes(b"x")
    (tmp_path / "notes").mkdir()  # not a day folder: left alone

    assert storage.remove_days_before(cutoff) == 2
    assert not old_day.exists() and not day_before.exists()
    assert (cutoff_day / "video.mp4").exists() and (later_day / "video.mp4").exists()
    assert (tmp_path / "notes").exists()


def test_a_pass_with_nothing_due_reads_only_the_index(env: dict[str, str]) -> None:
    """O(what expires): ten thousand tasks and ten thousand event-log entries of no task waiting for
    their time cost a pass three range reads, one per time index (tasks, events of no task, their
    entries in the event log), counted by a Redis of the test's own, which nothing else talks to."""
    private = PrivateRedis().start()
    try:
        svc = Services.build(Settings.from_env({**env, "REDIS_URL": private.url}))
        later = now_ms() + 3_600_000
        svc.redis.zadd(Keys().retention, {f"waiting-{n}": later for n in range(10_000)})
        svc.redis.zadd(Keys().events_taskless, {f"default {n}-0": now_ms() for n in range(10_000)})
        svc.redis.set(Keys().retention_backfill, "done")
        svc.redis.set(Keys().tenant_backfill, "done")
        svc.redis.config_resetstat()
        assert prune(svc).removed == []
        stats = svc.redis.info("commandstats")
        assert stats["cmdstat_zrangebyscore"]["calls"] == 3
        assert "cmdstat_xdel" not in stats
        assert stats["cmdstat_get"]["calls"] == 2  # the two backfills' markers
        assert "cmdstat_mget" not in stats and "cmdstat_watch" not in stats
    finally:
        private.stop()


def test_failed_jobs_are_kept_two_weeks_not_rqs_year(service: Service) -> None:
    """RQ keeps a failed job's arguments and traceback for a year by default: every job of ours says less."""
    svc = service.services
    pipe = svc.redis.pipeline(transaction=True)
    jobs.enqueue_archive(svc.redis, "a-task", retry_base_s=0, pipeline=pipe)
    jobs.enqueue_fan_out(svc.redis, pipe, "evt_x", "a-task", "task.failed")
    jobs.enqueue_delivery(svc.redis, pipe, "dlv_x", "dlv_x-1")
    jobs.enqueue_dispatch(svc.redis, "a-reason", pipeline=pipe)
    pipe.execute()
    jobs.enqueue_dispatch(svc.redis, "later", delay_s=60)
    for work in jobs.periodic_work(svc.settings).values():
        jobs.schedule_tick(svc.redis, work)
    found = [Job.fetch(i, connection=svc.redis) for q in jobs.ALL_QUEUES for i in _all_job_ids(svc, q)]
    assert len(found) == 7
    assert {job.failure_ttl for job in found} == {jobs.FAILED_JOB_TTL_S}


def _all_job_ids(svc: Services, queue_name: str) -> list[str]:
    queue = Queue(queue_name, connection=svc.redis)
    return [*queue.job_ids, *ScheduledJobRegistry(queue=queue).get_job_ids()]


def test_an_endpoint_disabled_event_leaves_with_its_deliveries_once_they_are_settled(
    stack: Stack, simulator, receiver: Receiver
) -> None:
    """`endpoint.disabled` belongs to no task, so it cannot leave with one: it has its own entry, due
    TASK_RETENTION_S after it was raised, and waits while one of its deliveries is still being retried."""
    service = endpoint_tests.start(
        stack,
        TASK_RETENTION_S="1",
        NOTIFY_RETRY_SCHEDULE_S="4,4",
        PRUNE_INTERVAL_S="3600",  # the test prunes itself, to see each step
    )
    told = ["endpoint.disabled"]
    endpoint_tests.register(service, receiver.script("/gone", Answer(410)), event_types=["task.submitted"])
    endpoint_tests.register(service, receiver.script("/told"), event_types=told)
    endpoint_tests.register(service, receiver.script("/later", Answer(500), Answer(200)), event_types=told)

    endpoint_tests.submit_as(service, simulator, endpoint_tests.KEY_A, "team-a", "job-1")
    (request,) = wait_for(lambda: receiver.received("/told"), timeout=30, what="endpoint.disabled told")
    event_id = request.headers["webhook-id"]
    listed = endpoint_tests.call(service, "GET", "/v1/deliveries").json()["data"]
    deliveries = [d["id"] for d in listed if d["event_id"] == event_id]
    assert len(deliveries) == 2 and keys_about(service, event_id, *deliveries)
    wait_for(lambda: receiver.received("/later"), timeout=30, what="the first, failed, attempt at /later")

    raised = request.at
    wait_for(lambda: time.time() - raised > 1.5)  # past its retention, while /later's retry waits
    report = prune(service.services)
    assert event_id in report.postponed and event_id not in report.removed
    assert keys_about(service, event_id, *deliveries)
    looks_again = service.services.redis.zscore(Keys().retention_taskless, event_id)
    assert looks_again is not None and looks_again + 1000 > now_ms() + 50_000  # in about a minute

    wait_for(
        lambda: all(
            endpoint_tests.call(service, "GET", f"/v1/deliveries/{d}").json()["data"]["status"] == "delivered"
            for d in deliveries
        ),
        timeout=30,
        what="/later's retry delivered",
    )
    service.services.redis.zadd(Keys().retention_taskless, {event_id: 0})  # that minute has passed
    removed = wait_for(lambda: event_id in prune(service.services).removed, timeout=15, what="removal")
    assert removed and keys_about(service, event_id, *deliveries) == []
    assert index_members(service, event_id, *deliveries) == []
    for delivery in deliveries:
        assert endpoint_tests.call(service, "GET", f"/v1/deliveries/{delivery}").status_code == 404
