"""Where a worker runs its jobs: in its own process, one after the other, or the archive download in a
forked work horse when WORKER_FORK_QUEUES asks; a job run in the worker still has its timeout and its
heartbeat, and one whose worker is killed in the middle is run again by the next worker. Real `python
-m workers` processes, the simulator and a webhook receiver on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict
from rq import Queue, get_current_job
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from tests import test_notify
from tests.conftest import Service, Workers, make_service
from tests.support import wait_for
from tests.test_notify import SECRET, Answer, Receiver
from webhook_service.config import ConfigError, Settings
from webhook_service.jobs import (
    ALL_QUEUES,
    ARCHIVE_QUEUE,
    DELIVERY_JOB_TIMEOUT_S,
    FAN_OUT_JOB_TIMEOUT_S,
    FIRST_ATTEMPT_BACKSTOP_S,
    JOB_MONITORING_INTERVAL_S,
    NOTIFY_QUEUE,
    fork_queues,
)
from webhook_service.notify.records import DeliveryStatus

IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a heron on one leg"}


receiver = test_notify.receiver  # a webhook receiver on loopback


@pytest.fixture
def stack(env: dict[str, str], receiver: Receiver) -> Iterator[tuple[Service, Workers, dict[str, str]]]:
    """The service and (not yet started) workers, delivering `task.archived` webhooks to `receiver`."""
    service, server, service_env = make_service(
        {
            **env,
            "ARCHIVE_RETRY_BASE_S": "0",
            "NOTIFY_WEBHOOK_URLS": f"{receiver.url}/hook",
            "NOTIFY_WEBHOOK_SECRET": SECRET,
            "NOTIFY_TIMEOUT_S": "100",  # a hanging receiver holds the delivery until the test ends it
            # The workers' periodic check, which restarts a scheduler, every 2 s rather than every 15 s.
            "RECONCILE_INTERVAL_S": "4",
            "PRUNE_INTERVAL_S": "4",
        }
    )
    workers = Workers(service_env)
    yield service, workers, service_env
    workers.stop()
    server.stop()


def metric_values(path: Path) -> dict[tuple[str, str], float]:
    """A metric file's samples, by sample name and labels (JSON), as the worker process wrote them."""
    if not path.exists():
        return {}
    values: dict[tuple[str, str], float] = {}
    for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
        _metric, sample, labels, _help = json.loads(key)
        values[(sample, json.dumps(labels, sort_keys=True))] = value
    return values


def samples_named(values: dict[tuple[str, str], float], name: str) -> float:
    return sum(value for (sample, _labels), value in values.items() if sample == name)


@pytest.mark.parametrize("fork_queues", ["", "archive"])
def test_jobs_run_in_the_worker_and_the_archive_in_a_horse_when_asked(
    stack: tuple[Service, Workers, dict[str, str]], receiver: Receiver, tmp_path: Path, fork_queues: str
) -> None:
    service, _, service_env = stack
    metrics_dir = tmp_path / "metrics"
    worker_env = {
        **service_env,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "WORKER_FORK_QUEUES": fork_queues,
    }
    worker = Workers(worker_env).start()
    try:
        for n in range(2):
            assert service.submit({**IMAGE, "external_task_id": f"where-{n}"}).status_code == 200
        wait_for(lambda: len(receiver.received("/hook")) == 2, timeout=60, what="both webhooks")
        wait_for(
            lambda: all(
                d.status is DeliveryStatus.DELIVERED
                for n in range(2)
                for d in service.services.deliveries.of_task(f"where-{n}")
            ),
            what="both deliveries recorded",
        )
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    # Metric files are named after the process that writes them: the worker's own pid, or `<pid>job` for
    # the work horses it forks. Both deliveries were counted by the worker process itself...
    own = metric_values(metrics_dir / f"counter_{worker.pid}.db")
    horses = metric_values(metrics_dir / f"counter_{worker.pid}job.db")
    assert samples_named(own, "kws_delivery_attempts_total") == 2
    assert samples_named(horses, "kws_delivery_attempts_total") == 0
    # ...and both downloads by the worker too, or by forked horses with WORKER_FORK_QUEUES=archive.
    downloaded_by = horses if fork_queues else own
    assert samples_named(downloaded_by, "kws_download_bytes_total") > 0
    assert samples_named(own if fork_queues else horses, "kws_download_bytes_total") == 0


def test_a_job_run_in_the_worker_is_stopped_at_its_timeout_and_the_next_one_runs(
    stack: tuple[Service, Workers, dict[str, str]],
) -> None:
    service, workers, _ = stack
    worker = workers.start()
    connection = service.services.redis
    notify = Queue(NOTIFY_QUEUE, connection=connection)
    hung = notify.enqueue_call("time.sleep", args=(60,), timeout=1)
    after = notify.enqueue_call("os.getpid")
    archive_pid = Queue(ARCHIVE_QUEUE, connection=connection).enqueue_call("os.getpid")
    hung_archive = Queue(ARCHIVE_QUEUE, connection=connection).enqueue_call(
        "time.sleep", args=(60,), timeout=1
    )

    def ended(job: Job) -> bool:
        return job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED)

    wait_for(
        lambda: ended(after) and ended(archive_pid) and ended(hung_archive),
        timeout=30,
        what="the jobs after the hung ones",
    )
    for stopped in (hung, hung_archive):
        assert stopped.get_status(refresh=True) == JobStatus.FAILED
        result = stopped.latest_result()
        assert result is not None and "JobTimeoutException" in (result.exc_string or "")
    assert after.return_value() == worker.pid  # the next job ran in the same worker process
    assert archive_pid.return_value() == worker.pid  # an archive job too, by default
    assert worker.poll() is None


# A worker as `python -m workers` builds it, but renewing heartbeats every second instead of every
# JOB_MONITORING_INTERVAL_S, and stopping once the queues are empty.
WORKER_WITH_A_ONE_SECOND_HEARTBEAT = """
from webhook_service.config import Settings
from webhook_service.jobs import ALL_QUEUES
from webhook_service.services import redis_connection
from workers.horse import ServiceWorker

settings = Settings.from_env()
connection = redis_connection(settings)
worker = ServiceWorker(list(ALL_QUEUES), connection=connection, settings=settings, job_monitoring_interval=1)
worker.work(burst=True)
"""


def sleep_and_note_the_heartbeat(seconds: float, deaf_to_the_alarm: bool = False) -> None:
    """Sleep, then note in the job's meta how long after its start its heartbeat was last renewed.
    `deaf_to_the_alarm`: stuck where RQ's SIGALRM cannot end it, as in a C call that retries through
    signals, until the sleep is over."""
    job = get_current_job()
    assert job is not None
    if deaf_to_the_alarm:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        time.sleep(seconds)
    finally:  # the alarm, noticed once the sleep is over, raises at the next line: note it even so
        job.refresh()
        assert job.started_at is not None and job.last_heartbeat is not None
        job.meta["renewed_after_s"] = (job.last_heartbeat - job.started_at).total_seconds()
        job.save_meta()
        if deaf_to_the_alarm:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})


def test_a_job_run_in_the_worker_keeps_its_heartbeat_until_its_timeout(
    stack: tuple[Service, Workers, dict[str, str]],
) -> None:
    """The worker renews the heartbeat of the job it runs, as it would a forked horse's, so a long job
    (an archive download) is not taken for abandoned; past the job's timeout it stops renewing, so a job
    the alarm could not stop is retried by a live worker rather than held forever."""
    service, _, service_env = stack
    archive = Queue(ARCHIVE_QUEUE, connection=service.services.redis)
    noting = f"{__name__}.sleep_and_note_the_heartbeat"
    long = archive.enqueue_call(noting, args=(2.5,), timeout=60)
    stuck = archive.enqueue_call(noting, args=(4.5, True), timeout=2)

    finished = subprocess.run(
        [sys.executable, "-c", WORKER_WITH_A_ONE_SECOND_HEARTBEAT],
        env={**os.environ, **service_env},
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stderr

    assert long.get_status(refresh=True) == JobStatus.FINISHED
    assert long.get_meta(refresh=True)["renewed_after_s"] >= 0.9  # renewed as it ran, not just at its start
    assert stuck.get_status(refresh=True) == JobStatus.FAILED  # by the alarm, once it was let through
    failure = stuck.latest_result()
    assert failure is not None and "JobTimeoutException" in (failure.exc_string or "")
    # It ran 4.5 s, its heartbeat renewed every second until its 2 s timeout and never after.
    assert stuck.get_meta(refresh=True)["renewed_after_s"] < 2
    assert f"job {stuck.id} has run" in finished.stderr and "past its 2 s timeout" in finished.stderr


@pytest.mark.timeout(240)
def test_a_job_whose_worker_is_killed_is_run_again_by_the_next_worker(
    stack: tuple[Service, Workers, dict[str, str]], receiver: Receiver
) -> None:
    service, workers, _ = stack
    receiver.script("/hook", Answer(delay=120))  # the first attempt hangs; the next is answered 200
    worker = workers.start()
    assert service.submit({**IMAGE, "external_task_id": "killed"}).status_code == 200
    wait_for(lambda: receiver.received("/hook"), timeout=60, what="the delivery to reach the receiver")
    (delivery,) = service.services.deliveries.of_task("killed")
    assert delivery.job is not None and delivery.status is DeliveryStatus.PENDING

    os.killpg(worker.pid, signal.SIGKILL)  # the worker, running the delivery itself, and its scheduler
    worker.wait(timeout=10)
    registry = StartedJobRegistry(NOTIFY_QUEUE, connection=service.services.redis)
    # The heartbeat of a job run in the worker lasts JOB_MONITORING_INTERVAL_S + 60 s, as a forked job's
    # (the worker renews it while the job runs), not its whole timeout...
    assert DELIVERY_JOB_TIMEOUT_S > JOB_MONITORING_INTERVAL_S
    assert registry.get_expired_job_ids(time.time() + JOB_MONITORING_INTERVAL_S + 61) == [delivery.job]
    # ...and a live worker's maintenance pass finds it once its heartbeat has lapsed. Run that pass as
    # it will run then, instead of waiting out the clock in a test: RQ schedules the job's crash retry.
    registry.cleanup(timestamp=time.time() + JOB_MONITORING_INTERVAL_S + 61)
    assert Job.fetch(delivery.job, connection=service.services.redis).get_status() == JobStatus.SCHEDULED
    workers.start()

    # The retry waits its interval (30 s) and the dead worker's scheduler lock (61 s at most).
    wait_for(
        lambda: service.services.deliveries.get(delivery.id).status is DeliveryStatus.DELIVERED,  # type: ignore[union-attr]
        timeout=150,
        interval=0.5,
        what="the delivery, run again by the new worker",
    )
    assert len(receiver.received("/hook")) == 2


@pytest.mark.timeout(240)
def test_a_fan_out_killed_in_its_first_attempt_leaves_the_delivery_to_its_own_job(
    env: dict[str, str], receiver: Receiver
) -> None:
    """A fan-out makes the first attempt of the delivery a single sink wants itself, that delivery's own
    job scheduled FIRST_ATTEMPT_BACKSTOP_S later: a worker killed in that attempt leaves the job, which
    makes the attempt when it is due."""
    service, server, service_env = make_service(
        {**env, "NOTIFY_WEBHOOK_URLS": f"{receiver.url}/hook", "NOTIFY_WEBHOOK_SECRET": SECRET}
    )
    workers = Workers(service_env)
    try:
        receiver.script("/hook", Answer(delay=120))  # the first attempt hangs; the next is answered 200
        worker = workers.start()
        assert service.submit({**IMAGE, "external_task_id": "orphaned"}).status_code == 200
        wait_for(
            lambda: receiver.received("/hook"), timeout=60, what="the first attempt to reach the receiver"
        )
        (delivery,) = service.services.deliveries.of_task("orphaned")
        assert delivery.job == delivery.id and delivery.status is DeliveryStatus.PENDING
        connection = service.services.redis
        started = StartedJobRegistry(NOTIFY_QUEUE, connection=connection).get_job_ids()
        assert delivery.id not in started and len(started) == 1  # the fan-out's job makes the attempt

        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        scheduled = ScheduledJobRegistry(NOTIFY_QUEUE, connection=connection)
        due = scheduled.get_scheduled_time(delivery.id).timestamp()
        # Past the fan-out's own timeout; rounded up to the second, as every scheduled delivery is.
        assert time.time() + FAN_OUT_JOB_TIMEOUT_S < due <= time.time() + FIRST_ATTEMPT_BACKSTOP_S + 1
        # Bring it forward as its time will bring it, rather than wait out the clock in a test.
        connection.zadd(scheduled.key, {delivery.id: time.time()})
        workers.start()
        wait_for(
            lambda: service.services.deliveries.get(delivery.id).status is DeliveryStatus.DELIVERED,  # type: ignore[union-attr]
            timeout=120,
            interval=0.5,
            what="the delivery, made by its own job",
        )
        assert len(receiver.received("/hook")) == 2
    finally:
        workers.stop()
        server.stop()


@pytest.mark.parametrize(
    ("value", "forked"),
    [
        ("", set()),
        ("archive", {ARCHIVE_QUEUE}),
        ("all", set(ALL_QUEUES)),
        ("none", set()),
        ("Archive, notify", {ARCHIVE_QUEUE, NOTIFY_QUEUE}),
    ],
)
def test_worker_fork_queues_names_the_forked_queues(
    env: dict[str, str], value: str, forked: set[str]
) -> None:
    assert fork_queues(Settings.from_env({**env, "WORKER_FORK_QUEUES": value})) == forked


@pytest.mark.parametrize(
    ("value", "message"), [("all,archive", "stand alone"), ("archives", "unknown queue")]
)
def test_worker_fork_queues_refuses_what_is_not_a_queue(
    env: dict[str, str], value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"WORKER_FORK_QUEUES: .*{message}"):
        fork_queues(Settings.from_env({**env, "WORKER_FORK_QUEUES": value}))
