"""Benchmark: under continuous load, the service's Redis levels off and stays there.

    .venv/bin/python bench/redis_plateau.py [--rate 5] [--seconds 240] [--retention 20] [--workers 2]
                                            [--sentinel]

Everything on loopback, as bench/redis_footprint.py runs it: a private redis-server, the Kling
simulator, the service under gunicorn, `python -m workers`, a webhook receiver. Tasks arrive at
`--rate` a second for `--seconds` (Prefer: respond-async, one sender on a fixed schedule), each called
back three times, archived and delivered once; retention is `--retention` seconds (TASK_RETENTION_S)
and the pruning pass runs every 2 s, so a task's whole life, removal included, fits in the run.

Redis's used_memory is read every 2 s. What is alive at any moment is bounded: tasks in flight, tasks
waiting out their retention, and RQ's records of finished jobs (JOB_RESULT_TTL_S, 60 s). Once the first
tasks are removed and the first job records expire, memory should stop growing: the plateau is the
median of the last half of the run, and every reading of that half must be within 10 % of it. Printed
with the baseline (the service started, no task) and the number of tasks in Redis at the end against
the number submitted. Exits 1 when a reading leaves the band or a task was not removed in time.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
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
from bench.redis_footprint import THREE_CALLBACKS
from kling_simulator import SimulatorServer
from webhook_service.keys import Keys

KEYS = Keys()
SAMPLE_S = 2.0
BAND = 0.10


def send_at_rate(base_url: str, rate: float, seconds: float, stop: threading.Event) -> int:
    """One create every 1/rate s on a fixed schedule, at most rate*seconds of them; returns how many."""
    total = int(rate * seconds)
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for n in range(total):
            due = started + n / rate
            if stop.wait(max(0.0, due - time.monotonic())):
                return n
            body = {
                "image": "https://example.com/a.jpg",
                "prompt": "plateau",
                "external_task_id": f"p-{n:06d}",
            }
            client.post("/v1/videos/image2video", json=body, headers={"Prefer": "respond-async"})
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=5.0, help="tasks per second")
    parser.add_argument("--seconds", type=float, default=240.0, help="how long tasks keep arriving")
    parser.add_argument("--retention", type=float, default=20.0, help="TASK_RETENTION_S")
    parser.add_argument("--workers", type=int, default=2, help="`python -m workers` processes")
    add_redis_option(parser)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-plateau-"))
    receiver = Receiver()
    print_table([("machine before", conditions()), ("code", code_version())])
    samples: list[tuple[float, int, int]] = []  # (seconds into the run, used_memory, tasks in Redis)
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
            KLING_MAX_CONCURRENCY="1000",
            DOWNLOAD_ALLOWED_HOSTS="127.0.0.1",
            NOTIFY_WEBHOOK_URLS=receiver.url,
            NOTIFY_WEBHOOK_SECRET=NOTIFY_SECRET,
            TASK_RETENTION_S=str(args.retention),
            PRUNE_INTERVAL_S="2",
        )
        stack.web(env)
        stack.workers(env, args.workers)
        wait_until(lambda: Worker.count(connection=connection) >= args.workers, 30, "the workers")
        time.sleep(2)  # the workers' first scheduling writes land before the baseline
        baseline = int(connection.info("memory")["used_memory"])

        stop = threading.Event()
        sent: list[int] = []
        sender = threading.Thread(
            target=lambda: sent.append(
                send_at_rate(f"http://127.0.0.1:{port}", args.rate, args.seconds, stop)
            )
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
        delivered = len(receiver.first)
        tasks_left = int(connection.zcard(KEYS.tasks))
    receiver.stop()

    submitted = sent[0] if sent else 0
    late = [s for s in samples if s[0] >= args.seconds / 2]
    plateau = statistics.median(used for _, used, _ in late)
    low, high = min(used for _, used, _ in late), max(used for _, used, _ in late)
    in_band = all(abs(used - plateau) <= BAND * plateau for _, used, _ in late)
    # In Redis at the end: at most the tasks of the last retention period and a pipeline's worth more.
    bound = int(args.rate * (args.retention + 30))
    print_table(
        [
            ("machine after", conditions()),
            ("load", f"{submitted} tasks at {args.rate:g}/s for {args.seconds:g} s; {delivered} delivered"),
            ("baseline", f"{baseline:,} bytes used_memory, the service started, no task"),
            (
                "plateau",
                f"{plateau:,.0f} bytes (median of the last half); readings {low:,}..{high:,} "
                f"({(low - plateau) / plateau:+.1%} / {(high - plateau) / plateau:+.1%}; band ±{BAND:.0%})",
            ),
            ("over the baseline", f"{plateau - baseline:,.0f} bytes for the tasks alive at once"),
            ("tasks in Redis at the end", f"{tasks_left} of {submitted} submitted (bound {bound})"),
            (
                "readings",
                " ".join(
                    f"{t:.0f}s:{used / 1e6:.1f}MB/{n}"
                    for t, used, n in samples[:: max(1, len(samples) // 12)]
                ),
            ),
        ]
    )
    if not in_band or tasks_left > bound:
        print(f"no plateau within ±{BAND:.0%}, or tasks not removed; logs in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
