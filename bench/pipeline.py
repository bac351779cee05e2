"""Benchmark: tasks per second through the whole pipeline, against the rate of no-op jobs on the same workers.

    .venv/bin/python bench/pipeline.py [--tasks 1000] [--workers 2] [--noop-jobs 1000]

Everything on loopback: a private redis-server, the Kling simulator (its default scenario: `processing`
after 0.2 s, `succeed` after 0.5 s, each called back, with its small MP4), the service under gunicorn as
the Procfile runs it, `--workers` `python -m workers` processes (two: the README's "run at least two
workers", and this machine's two cores), and a webhook receiver. `--tasks` tasks are submitted at once
through the API (8 clients); each is created upstream, called back twice, archived (the video
downloaded from the simulator) and announced by one webhook (`task.archived`, the default filter). The
figure is tasks from the first submit to the last webhook, per second.

Baseline: the same workers run `--noop-jobs` jobs that do nothing (`os.getpid`), enqueued at once,
before and after the pipeline: the most jobs per second RQ's fork-per-job workers can run here. The
ratio of the two rates, and the jobs each task really took, show how much of the pipeline's time is
RQ's cost per job. Exits 1 when a task's webhook is missing at the deadline.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis
from rq import Queue, Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KLING_TOKEN,
    NOTIFY_SECRET,
    Receiver,
    Stack,
    code_version,
    conditions,
    cpu_seconds,
    free_port,
    print_table,
    service_env,
    tree,
    wait_until,
)
from kling_simulator import SimulatorServer
from webhook_service.jobs import MAINTENANCE_QUEUE

DEADLINE_S = 1800
SUBMITTERS = 8


def jobs_done(connection: redis.Redis) -> int:
    """Jobs finished or failed so far, by the workers' own counters (the registries forget a job once
    its result expires, 60 s after it ends for the service's jobs)."""
    return sum(w.successful_job_count + w.failed_job_count for w in Worker.all(connection=connection))


def noop_rate(connection: redis.Redis, count: int, worker_pids: list[int]) -> tuple[float, float]:
    """Jobs per second for `count` no-op jobs, and the workers' CPU ms per job (work horses included)."""
    queue = Queue(MAINTENANCE_QUEUE, connection=connection)
    done_before = jobs_done(connection)
    cpu_before = cpu_seconds(worker_pids, reaped=True)
    started = time.monotonic()
    with connection.pipeline() as pipe:
        queue.enqueue_many([Queue.prepare_data("os.getpid") for _ in range(count)], pipeline=pipe)
        pipe.execute()
    wait_until(lambda: jobs_done(connection) - done_before >= count, DEADLINE_S, "the no-op jobs", 0.02)
    seconds = time.monotonic() - started
    return count / seconds, (cpu_seconds(worker_pids, reaped=True) - cpu_before) * 1000 / count


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="`python -m workers` processes")
    parser.add_argument("--noop-jobs", type=int, default=1000, help="jobs in each baseline run")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    receiver = Receiver()
    print_table([("machine before", conditions()), ("code", code_version())])
    with SimulatorServer(token=KLING_TOKEN) as sim, Stack(workdir) as stack:
        redis_url = stack.redis()
        connection = redis.Redis.from_url(redis_url)
        port = free_port()
        env = service_env(
            workdir,
            redis_url,
            port,
            KLING_API_BASE=sim.url,
            KLING_API_TOKEN=KLING_TOKEN,
            KLING_MAX_CONCURRENCY=str(args.tasks + 10),  # the account's limit is not what is measured
            DOWNLOAD_ALLOWED_HOSTS="127.0.0.1",
            NOTIFY_WEBHOOK_URLS=receiver.url,
            NOTIFY_WEBHOOK_SECRET=NOTIFY_SECRET,
        )
        web_pid = stack.web(env).pid
        worker_pids = [process.pid for process in stack.workers(env, args.workers)]
        wait_until(lambda: Worker.count(connection=connection) >= args.workers, 30, "the workers")

        noop_first = noop_rate(connection, args.noop_jobs, worker_pids)
        done_before = jobs_done(connection)
        cpu_before = cpu_seconds(worker_pids, reaped=True), cpu_seconds(tree(web_pid))
        started = time.monotonic()
        submitted_s = submit(f"http://127.0.0.1:{port}", args.tasks)
        deadline = time.monotonic() + DEADLINE_S
        while receiver.count() < args.tasks and time.monotonic() < deadline:
            time.sleep(0.1)
        seconds = time.monotonic() - started
        jobs = jobs_done(connection) - done_before
        worker_cpu_s = cpu_seconds(worker_pids, reaped=True) - cpu_before[0]
        web_cpu_s = cpu_seconds(tree(web_pid)) - cpu_before[1]
        noop_second = noop_rate(connection, args.noop_jobs, worker_pids)
    receiver.stop()

    delivered = receiver.count()
    tasks_per_s = delivered / seconds
    noop_per_s = (noop_first[0] + noop_second[0]) / 2
    print_table(
        [
            ("machine after", conditions()),
            ("workers", args.workers),
            (
                "no-op jobs (baseline)",
                f"{noop_first[0]:.1f} and {noop_second[0]:.1f} jobs/s (before and after)",
            ),
            ("  worker CPU per job", f"{noop_first[1]:.1f} and {noop_second[1]:.1f} ms"),
            (
                "pipeline",
                f"{delivered} of {args.tasks} tasks in {seconds:.1f} s (submitted in {submitted_s:.1f} s)",
            ),
            ("  tasks/s", f"{tasks_per_s:.2f}"),
            ("  jobs run", f"{jobs} ({jobs / args.tasks:.2f} per task, {jobs / seconds:.1f} jobs/s)"),
            (
                "  CPU per task",
                f"workers {worker_cpu_s * 1000 / delivered:.0f} ms (work horses included), "
                f"web {web_cpu_s * 1000 / delivered:.0f} ms",
            ),
            ("ratio", f"{tasks_per_s / noop_per_s:.3f} tasks/s per no-op job/s"),
            ("jobs/s vs no-op", f"{jobs / seconds / noop_per_s:.2f}"),
        ]
    )
    if delivered < args.tasks:
        print(f"{args.tasks - delivered} webhooks missing; logs in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def submit(base_url: str, count: int) -> float:
    """Submit `count` tasks through the API at once; returns how long it took."""
    started = time.monotonic()

    def one(n: int) -> None:
        body = {"image": "https://example.com/a.jpg", "prompt": "bench", "external_task_id": f"pipe-{n:05d}"}
        response = client.post("/v1/videos/image2video", json=body)
        response.raise_for_status()

    with httpx.Client(base_url=base_url, timeout=60) as client, ThreadPoolExecutor(SUBMITTERS) as pool:
        list(pool.map(one, range(count)))
    return time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
