"""Where a worker runs its jobs: the short ones in its own process, one after the other, the archive
download in a forked work horse (WORKER_FORK_QUEUES); a job run in the worker still has its timeout, and
one whose worker is killed in the middle is run again by the next worker. Real `python -m workers`
processes, the simulator and a webhook receiver on loopback."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict
from rq import Queue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from tests import test_notify
from tests.conftest import Service, Workers, make_service
from tests.support import wait_for
from tests.test_notify import SECRET, Answer, Receiver
from webhook_service.config import ConfigError, Settings
from webhook_service.jobs import (
    ALL_QUEUES,
    ARCHIVE_QUEUE,
    DELIVERY_JOB_TIMEOUT_S,
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


def test_short_jobs_run_in_the_worker_and_the_archive_in_a_forked_horse(
    stack: tuple[Service, Workers, dict[str, str]], receiver: Receiver, tmp_path: Path
) -> None:
    service, _, service_env = stack
    metrics_dir = tmp_path / "metrics"
    worker = Workers({**service_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}).start()
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
    # ...and both downloads by forked horses.
    assert samples_named(horses, "kws_download_bytes_total") > 0
    assert samples_named(own, "kws_download_bytes_total") == 0


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

    def ended(job: Job) -> bool:
        return job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED)

    wait_for(lambda: ended(after) and ended(archive_pid), timeout=30, what="the jobs after the hung one")
    assert hung.get_status(refresh=True) == JobStatus.FAILED
    result = hung.latest_result()
    assert result is not None and "JobTimeoutException" in (result.exc_string or "")
    assert after.return_value() == worker.pid  # the next job ran in the same worker process
    assert archive_pid.return_value() not in (None, worker.pid)  # an archive job runs in a fork
    assert worker.poll() is None


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
    # Nothing renews the heartbeat of a job that runs in the worker: it lasts the job's whole timeout, so
    # a delivery still running is never taken for abandoned at a forked job's shorter heartbeat...
    assert not registry.get_expired_job_ids(time.time() + JOB_MONITORING_INTERVAL_S + 61)
    # ...and a live worker's maintenance pass finds it once its heartbeat has lapsed. Run that pass as
    # it will run then, instead of waiting out the clock in a test: RQ schedules the job's crash retry.
    registry.cleanup(timestamp=time.time() + DELIVERY_JOB_TIMEOUT_S + 61)
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


@pytest.mark.parametrize(
    ("value", "forked"),
    [
        ("", {ARCHIVE_QUEUE}),
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
