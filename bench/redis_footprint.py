"""Benchmark: the service's own Redis bytes per finished task, against an empty service's Redis.

    .venv/bin/python bench/redis_footprint.py [--tasks 200] [--base64-tasks 10] [--workers 2] [--sentinel]

Everything on loopback: a private redis-server (no persistence), the Kling simulator, the service under
gunicorn as the Procfile runs it, `python -m workers`, and a webhook receiver. Each task lives the life
the goals name: created upstream, called back three times (`processing`, `processing` again, a
duplicate, then `succeed`), its video archived, one webhook delivered (`task.archived`, the default
filter). Two kinds, one after the other:

- `--tasks` tasks whose image is a URL (goal: median at most 8 KiB);
- `--base64-tasks` tasks whose image is 10 MB of Base64, the most Kling takes (goal: at most 16 KiB).

Per task, the figure is MEMORY USAGE (exact: SAMPLES 0) summed over every key the service keeps for
that task alone (keys.py): its record, request, history and task_id lookup, its deliveries with their
attempts, the events they send, the set of its deliveries. Beside it, the growth of Redis's
used_memory over each kind's run, per task: that adds the task's share of the indexes (a member in each
sorted set) and RQ's records of the jobs the task ran, kept 60 s after they finish (jobs.py); with
`--settle` it waits for those to expire and prints what the tasks leave behind. The baseline is
used_memory once the service has started and holds no task. Exits 1 when a goal is missed.

Memory under continuous load, which levels off because settled tasks are removed after
TASK_RETENTION_S (domain/retention.py), is bench/redis_plateau.py's.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KLING_TOKEN,
    NOTIFY_SECRET,
    Receiver,
    Stack,
    add_redis_option,
    code_version,
    conditions,
    connect,
    free_port,
    print_table,
    service_env,
    wait_until,
)
from kling_simulator import SimulatorServer
from webhook_service.domain.validation import MAX_IMAGE_BYTES
from webhook_service.keys import Keys

KEYS = Keys()
URL_GOAL_BYTES = 8 * 1024
BASE64_GOAL_BYTES = 16 * 1024
THREE_CALLBACKS = {
    "steps": [
        {"status": "processing", "delay": 0.1},
        {"status": "processing", "delay": 0.2},
        {"status": "succeed", "delay": 0.4},
    ]
}
SUBMITTERS = 4
DEADLINE_S = 600
SETTLE_DEADLINE_S = 900


def own_keys(connection: redis.Redis, external_id: str) -> dict[str, list[str]]:
    """The keys that belong to one task alone, by kind, as keys.py names them."""
    record = connection.get(KEYS.task(external_id))
    upstream_id = _json(record).get("task_id") if record else None
    deliveries = sorted(m.decode() for m in connection.smembers(KEYS.task_deliveries(external_id)))
    events = {_json(connection.get(KEYS.delivery(d))).get("event_id") for d in deliveries}
    return {
        "task": [KEYS.task(external_id)],
        "request": [KEYS.task_request(external_id)],
        "history": [KEYS.task_history(external_id)],
        "task-id": [KEYS.task_id(upstream_id)] if upstream_id else [],
        "deliveries": [KEYS.task_deliveries(external_id), *(KEYS.delivery(d) for d in deliveries)],
        "attempts": [KEYS.delivery_attempts(d) for d in deliveries],
        "events": [KEYS.event(e) for e in events if e],
    }


def _json(raw: Any) -> dict[str, Any]:
    return json.loads(raw) if raw else {}


def footprint(connection: redis.Redis, external_id: str) -> dict[str, int]:
    """Bytes per kind of key for one task (MEMORY USAGE, exact)."""
    return {
        kind: sum(connection.memory_usage(key, samples=0) or 0 for key in keys)
        for kind, keys in own_keys(connection, external_id).items()
    }


def run_kind(
    base_url: str, connection: redis.Redis, receiver: Receiver, names: list[str], image: str
) -> tuple[list[dict[str, int]], float, float]:
    """Submit the tasks, wait until each one's webhook is delivered; per-task footprints, used_memory
    growth per task, and the seconds it took."""
    before = int(connection.info("memory")["used_memory"])
    delivered_before = connection.zcard(KEYS.deliveries("delivered"))
    started = time.monotonic()

    def submit(name: str) -> None:
        body = {"image": image, "prompt": "footprint", "external_task_id": name}
        client.post("/v1/videos/image2video", json=body).raise_for_status()

    with httpx.Client(base_url=base_url, timeout=120) as client, ThreadPoolExecutor(SUBMITTERS) as pool:
        list(pool.map(submit, names))
    wanted = set(names)
    wait_until(lambda: wanted <= set(receiver.first), DEADLINE_S, "every task's webhook")
    wait_until(
        lambda: connection.zcard(KEYS.deliveries("delivered")) - delivered_before >= len(names),
        60,
        "every delivery recorded as delivered",
    )
    seconds = time.monotonic() - started
    grown = (int(connection.info("memory")["used_memory"]) - before) / len(names)
    return [footprint(connection, name) for name in names], grown, seconds


def settle(connection: redis.Redis, baseline_jobs: set[bytes]) -> int:
    """used_memory once RQ has let go of the records of the jobs the tasks ran (60 s after each
    finished): what the tasks leave behind. Periodic work keeps its own records coming and going."""
    tasks_jobs = set(connection.scan_iter("rq:job:*", count=1000)) - baseline_jobs
    wait_until(
        lambda: not any(connection.exists(key) for key in tasks_jobs),
        SETTLE_DEADLINE_S,
        "RQ's finished job records to expire",
        interval=5,
    )
    return int(connection.info("memory")["used_memory"])


def median_total(footprints: list[dict[str, int]]) -> int:
    return int(statistics.median(sum(f.values()) for f in footprints))


def breakdown(footprints: list[dict[str, int]]) -> str:
    kinds = footprints[0].keys()
    return ", ".join(f"{kind} {int(statistics.median(f[kind] for f in footprints))}" for kind in kinds)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=200, help="tasks with a URL image")
    parser.add_argument("--base64-tasks", type=int, default=10, help="tasks with a 10 MB Base64 image")
    parser.add_argument("--workers", type=int, default=2, help="`python -m workers` processes")
    parser.add_argument(
        "--settle", action="store_true", help="then wait (about a minute) for RQ's job records to expire"
    )
    add_redis_option(parser)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    receiver = Receiver()
    print_table([("machine before", conditions()), ("code", code_version())])
    with SimulatorServer(token=KLING_TOKEN) as sim, Stack(workdir) as stack:
        sim.state.set_default(THREE_CALLBACKS)
        redis_env = stack.redis(sentinel=args.sentinel)
        connection = connect(redis_env)
        port = free_port()
        env = service_env(
            workdir,
            redis_env,
            port,
            KLING_API_BASE=sim.url,
            KLING_API_TOKEN=KLING_TOKEN,
            KLING_MAX_CONCURRENCY="1000",  # the account's limit is not what is measured
            DOWNLOAD_ALLOWED_HOSTS="127.0.0.1",
            NOTIFY_WEBHOOK_URLS=receiver.url,
            NOTIFY_WEBHOOK_SECRET=NOTIFY_SECRET,
        )
        stack.web(env)
        stack.workers(env, args.workers)
        wait_until(lambda: Worker.count(connection=connection) >= args.workers, 30, "the workers")
        time.sleep(2)  # the workers' first maintenance and scheduling writes land before the baseline
        baseline = int(connection.info("memory")["used_memory"])
        baseline_jobs = set(connection.scan_iter("rq:job:*", count=1000))
        base_url = f"http://127.0.0.1:{port}"

        url_names = [f"url-{n:05d}" for n in range(args.tasks)]
        url_tasks = run_kind(base_url, connection, receiver, url_names, "https://example.com/a.jpg")
        image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_IMAGE_BYTES - 8)).decode()
        b64_names = [f"b64-{n:05d}" for n in range(args.base64_tasks)]
        b64_tasks = run_kind(base_url, connection, receiver, b64_names, image)
        callbacks = len(sim.state.callbacks())
        settled = settle(connection, baseline_jobs) if args.settle else None
    receiver.stop()

    url_median, b64_median = median_total(url_tasks[0]), median_total(b64_tasks[0])
    print_table(
        [
            ("machine after", conditions()),
            ("baseline", f"{baseline:,} bytes used_memory, the service started, no task"),
            ("callbacks sent", f"{callbacks} ({callbacks / (args.tasks + args.base64_tasks):.1f} per task)"),
            (
                f"URL image ({args.tasks} tasks)",
                f"median {url_median:,} bytes of its own keys (goal <= {URL_GOAL_BYTES:,}); "
                f"max {max(sum(f.values()) for f in url_tasks[0]):,}",
            ),
            ("  by key, median", breakdown(url_tasks[0])),
            ("  used_memory growth", f"{url_tasks[1]:,.0f} bytes per task, in {url_tasks[2]:.1f} s"),
            (
                f"10 MB Base64 image ({args.base64_tasks})",
                f"median {b64_median:,} bytes of its own keys (goal <= {BASE64_GOAL_BYTES:,}); "
                f"the request was {len(image):,} characters",
            ),
            ("  by key, median", breakdown(b64_tasks[0])),
            ("  used_memory growth", f"{b64_tasks[1]:,.0f} bytes per task, in {b64_tasks[2]:.1f} s"),
        ]
    )
    if settled is not None:
        per_task = (settled - baseline) / (args.tasks + args.base64_tasks)
        print_table([("after RQ's records expired", f"{per_task:,.0f} bytes per task over the baseline")])
    if url_median > URL_GOAL_BYTES or b64_median > BASE64_GOAL_BYTES:
        print(f"a goal was missed; logs in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
