"""Benchmark: the service's Redis bytes per finished task, the plateau under continuous load, and the
baseline they stand on, in one run.

    .venv/bin/python bench/redis_footprint.py [--tasks 200] [--base64-tasks 10] [--workers 2] [--settle]
                                              [--rate 5] [--seconds 180] [--retention 20] [--sentinel]

Everything on loopback: a private redis-server (no persistence; with `--sentinel` a Sentinel group of the
run's own, every connection through it, in both phases), the Kling simulator, the service under
gunicorn as the Procfile runs it, `python -m workers`, and a webhook receiver. Each task lives the life
the goals name: created upstream, called back three times (`processing`, `processing` again, a
duplicate, then `succeed`), its video archived, one webhook delivered (`task.archived`, the default
filter).

1. Bytes per finished task, two kinds one after the other: `--tasks` tasks whose image is a URL (goal:
   median at most 8 KiB) and `--base64-tasks` whose image is 10 MB of Base64, the most Kling takes
   (goal: at most 16 KiB). A task is counted whole (bench/redis_accounting.py): every key it owns and
   its share of the indexes and of its tenant's event log. Beside it, the growth of Redis's used_memory
   over each kind's run, per task, which adds RQ's records of the jobs the task ran (kept
   JOB_RESULT_TTL_S, 60 s, after they finish: jobs.py); with `--settle` the run waits for those to
   expire and prints what the tasks leave behind. The baseline is used_memory once the service has
   started and holds no task.
2. The plateau, on a fresh Redis and service with TASK_RETENTION_S `--retention` and a pruning pass
   every 2 s: tasks arrive at `--rate` a second for `--seconds` (Prefer: respond-async, one sender on a
   fixed schedule; at most rate x seconds tasks, sampling ends a minute after the last at the latest).
   used_memory is read every 2 s; the plateau is the median of the last half of the run, and every
   reading of that half must be within 10 % of it. Printed with that run's baseline and the tasks in
   Redis at the end against those submitted.

Exits 1 when a goal is missed, a reading leaves the band, or tasks were not removed in time.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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
from bench.redis_accounting import footprint, own_keys, shared_keys, task_ids
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
SAMPLE_S = 2.0
BAND = 0.10


@dataclass
class Kind:
    footprints: list[dict[str, int]]
    grown: float  # used_memory growth per task over the kind's run
    seconds: float

    @property
    def median(self) -> int:
        return int(statistics.median(sum(f.values()) for f in self.footprints))

    @property
    def largest(self) -> int:
        return max(sum(f.values()) for f in self.footprints)

    def breakdown(self) -> str:
        kinds = self.footprints[0].keys()
        return ", ".join(f"{k} {int(statistics.median(f[k] for f in self.footprints))}" for k in kinds)


def start_service(
    stack: Stack,
    workdir: Path,
    sim: SimulatorServer,
    receiver: Receiver,
    args: argparse.Namespace,
    **extra: str,
) -> tuple[redis.Redis, str, int]:
    """Redis, web and workers; the connection, the base URL and the baseline (used_memory, no task)."""
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
        **extra,
    )
    stack.web(env)
    stack.workers(env, args.workers)
    wait_until(lambda: Worker.count(connection=connection) >= args.workers, 30, "the workers")
    time.sleep(2)  # the workers' first maintenance and scheduling writes land before the baseline
    return connection, f"http://127.0.0.1:{port}", int(connection.info("memory")["used_memory"])


def run_kind(
    base_url: str, connection: redis.Redis, receiver: Receiver, names: list[str], image: str
) -> Kind:
    """Submit the tasks, wait until each one's webhook is delivered, then count each task whole."""
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
    ids = [task_ids(connection, name) for name in names]
    owned = {key for i in ids for keys in own_keys(connection, i).values() for key in keys}
    # Another kind's tasks' own keys are no index: they hold none of these tasks' members.
    shared = [k for k in shared_keys(connection, owned) if not _owned_by_another(k.name)]
    return Kind([footprint(connection, i, shared) for i in ids], grown, seconds)


def _owned_by_another(name: str) -> bool:
    return name.startswith((KEYS.task_deliveries(""), KEYS.video("")))


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


def send_at_rate(base_url: str, rate: float, seconds: float, stop: threading.Event) -> int:
    """One create every 1/rate s on a fixed schedule, at most rate*seconds of them; returns how many."""
    total = int(rate * seconds)
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for n in range(total):
            if stop.wait(max(0.0, started + n / rate - time.monotonic())):
                return n
            body = {
                "image": "https://example.com/a.jpg",
                "prompt": "plateau",
                "external_task_id": f"p-{n:06d}",
            }
            client.post("/v1/videos/image2video", json=body, headers={"Prefer": "respond-async"})
    return total


@dataclass
class Plateau:
    baseline: int
    samples: list[tuple[float, int, int]]  # (seconds into the run, used_memory, tasks in Redis)
    submitted: int
    delivered: int
    tasks_left: int

    def late(self, seconds: float) -> list[int]:
        return [used for at, used, _ in self.samples if at >= seconds / 2]


def run_plateau(workdir: Path, sim: SimulatorServer, args: argparse.Namespace) -> Plateau:
    """Tasks at a steady rate on a fresh Redis and service whose retention is short: used_memory levels
    off once the first tasks are removed and the first job records expire."""
    receiver = Receiver()
    workdir.mkdir()
    samples: list[tuple[float, int, int]] = []
    try:
        with Stack(workdir) as stack:
            connection, base_url, baseline = start_service(
                stack,
                workdir,
                sim,
                receiver,
                args,
                TASK_RETENTION_S=str(args.retention),
                PRUNE_INTERVAL_S="2",
            )
            stop, sent = threading.Event(), []
            sender = threading.Thread(
                target=lambda: sent.append(send_at_rate(base_url, args.rate, args.seconds, stop))
            )
            started = time.monotonic()
            sender.start()
            try:
                while sender.is_alive() and time.monotonic() - started < args.seconds + 60:
                    used = int(connection.info("memory")["used_memory"])
                    samples.append((time.monotonic() - started, used, int(connection.zcard(KEYS.tasks))))
                    time.sleep(SAMPLE_S)
            finally:
                stop.set()
                sender.join()
            tasks_left = int(connection.zcard(KEYS.tasks))
    finally:
        receiver.stop()
    return Plateau(baseline, samples, sent[0] if sent else 0, len(receiver.first), tasks_left)


def plateau_rows(result: Plateau, args: argparse.Namespace) -> tuple[list[tuple[str, str]], bool]:
    """The plateau's lines, and whether it held: every late reading in the band, old tasks removed."""
    late = result.late(args.seconds)
    plateau = statistics.median(late)
    low, high = min(late), max(late)
    in_band = all(abs(used - plateau) <= BAND * plateau for used in late)
    bound = int(args.rate * (args.retention + 30))  # the last retention period's tasks, and a pipeline's
    every = max(1, len(result.samples) // 12)
    rows = [
        (
            "plateau load",
            f"{result.submitted} tasks at {args.rate:g}/s for {args.seconds:g} s, retention "
            f"{args.retention:g} s; {result.delivered} delivered",
        ),
        ("  baseline", f"{result.baseline:,} bytes used_memory, a fresh service, no task"),
        (
            "  plateau",
            f"{plateau:,.0f} bytes (median of the last half); readings {low:,}..{high:,} "
            f"({(low - plateau) / plateau:+.1%} / {(high - plateau) / plateau:+.1%}; band ±{BAND:.0%})",
        ),
        ("  over the baseline", f"{plateau - result.baseline:,.0f} bytes for what is alive at once"),
        ("  tasks in Redis at the end", f"{result.tasks_left} of {result.submitted} (bound {bound})"),
        (
            "  readings",
            " ".join(f"{t:.0f}s:{used / 1e6:.1f}MB/{n}" for t, used, n in result.samples[::every]),
        ),
    ]
    return rows, in_band and result.tasks_left <= bound


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
    parser.add_argument("--rate", type=float, default=5.0, help="plateau: tasks per second")
    parser.add_argument("--seconds", type=float, default=180.0, help="plateau: how long tasks keep arriving")
    parser.add_argument("--retention", type=float, default=20.0, help="plateau: TASK_RETENTION_S")
    add_redis_option(parser)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    receiver = Receiver()
    print_table([("machine before", conditions()), ("code", code_version())])
    with SimulatorServer(token=KLING_TOKEN) as sim:
        sim.state.set_default(THREE_CALLBACKS)
        with Stack(workdir) as stack:
            connection, base_url, baseline = start_service(stack, workdir, sim, receiver, args)
            baseline_jobs = set(connection.scan_iter("rq:job:*", count=1000))
            url_names = [f"url-{n:05d}" for n in range(args.tasks)]
            url = run_kind(base_url, connection, receiver, url_names, "https://example.com/a.jpg")
            image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_IMAGE_BYTES - 8)).decode()
            b64_names = [f"b64-{n:05d}" for n in range(args.base64_tasks)]
            b64 = run_kind(base_url, connection, receiver, b64_names, image)
            callbacks = len(sim.state.callbacks())
            settled = settle(connection, baseline_jobs) if args.settle else None
        receiver.stop()
        plateau = run_plateau(workdir / "plateau", sim, args)

    rows = [
        ("machine after", conditions()),
        ("baseline", f"{baseline:,} bytes used_memory, the service started, no task"),
        ("callbacks sent", f"{callbacks} ({callbacks / (args.tasks + args.base64_tasks):.1f} per task)"),
        (
            f"URL image ({args.tasks} tasks)",
            f"median {url.median:,} bytes a task, counted whole (goal <= {URL_GOAL_BYTES:,}); "
            f"max {url.largest:,}",
        ),
        ("  by kind, median", url.breakdown()),
        (
            "  used_memory growth",
            f"{url.grown:,.0f} bytes per task, RQ's records included, in {url.seconds:.1f} s",
        ),
        (
            f"10 MB Base64 image ({args.base64_tasks})",
            f"median {b64.median:,} bytes a task, counted whole (goal <= {BASE64_GOAL_BYTES:,}); "
            f"the request was {len(image):,} characters",
        ),
        ("  by kind, median", b64.breakdown()),
        (
            "  used_memory growth",
            f"{b64.grown:,.0f} bytes per task, RQ's records included, in {b64.seconds:.1f} s",
        ),
    ]
    if settled is not None:
        per_task = (settled - baseline) / (args.tasks + args.base64_tasks)
        rows.append(("after RQ's records expired", f"{per_task:,.0f} bytes per task over the baseline"))
    lines, held = plateau_rows(plateau, args)
    print_table(rows + lines)
    missed = url.median > URL_GOAL_BYTES or b64.median > BASE64_GOAL_BYTES
    if missed or not held:
        print(f"a goal was missed or no plateau held; logs in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
