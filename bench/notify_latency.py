"""Benchmark: from Kling's `succeed` callback to the first downstream webhook delivered, per task.

    .venv/bin/python bench/notify_latency.py [--tasks 1000] [--rate 8] [--workers 2] [--event task.archived]
                                              [--sentinel]

Everything runs on this machine, on loopback: a private redis-server (no persistence; with `--sentinel`,
a Sentinel group of the run's own), the Kling simulator (each task succeeds 0.3 s after create, with its
small MP4), the service under gunicorn as the Procfile runs it, `python -m workers` processes, and a
webhook receiver. Tasks are submitted at a fixed rate; for each, the latency is from the moment the
service recorded the `succeed` callback (the task's history) to the moment the receiver got the
webhook. With the default filter the first webhook is `task.archived`, so the time includes archiving
the video; `--event task.succeeded` measures the notification path alone. Exits 1 when a webhook is
missing at the deadline.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KLING_TOKEN,
    NOTIFY_SECRET,
    Receiver,
    Stack,
    add_redis_option,
    connect,
    free_port,
    percentile,
    service_env,
)
from kling_simulator import SimulatorServer
from webhook_service.domain.store import TaskStore
from webhook_service.keys import Keys

SUCCEED_AFTER_S = 0.3
DEADLINE_AFTER_LAST_S = 120


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=8.0, help="tasks submitted per second")
    parser.add_argument("--workers", type=int, default=2, help="`python -m workers` processes")
    parser.add_argument("--event", default="task.archived", help="the webhook filter (NOTIFY_WEBHOOK_EVENTS)")
    add_redis_option(parser)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per webhook received

    workdir = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    receiver = Receiver()
    with SimulatorServer(token=KLING_TOKEN) as sim, Stack(workdir) as stack:
        sim.state.set_default({"steps": [{"status": "succeed", "delay": SUCCEED_AFTER_S}]})
        port = free_port()
        env = service_env(
            workdir,
            stack.redis(sentinel=args.sentinel),
            port,
            KLING_API_BASE=sim.url,
            KLING_API_TOKEN=KLING_TOKEN,
            KLING_MAX_CONCURRENCY="100000",
            DOWNLOAD_ALLOWED_HOSTS="127.0.0.1",
            NOTIFY_WEBHOOK_URLS=receiver.url,
            NOTIFY_WEBHOOK_SECRET=NOTIFY_SECRET,
            NOTIFY_WEBHOOK_EVENTS=args.event,
        )
        stack.web(env)
        stack.workers(env, args.workers)
        result = run(args, f"http://127.0.0.1:{port}", env, receiver)
    receiver.stop()
    print(json.dumps(result, indent=2))
    if result["missing"]:
        print(f"missing webhooks; process logs in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, base_url: str, env: dict[str, str], receiver: Receiver) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        ids = [f"bench-{n:05d}" for n in range(args.tasks)]
        started = time.monotonic()

        def submit(external_id: str) -> None:
            body = {"image": "https://example.com/a.jpg", "prompt": "bench", "external_task_id": external_id}
            response = http.post("/v1/videos/image2video", json=body)
            response.raise_for_status()

        with ThreadPoolExecutor(max_workers=8) as pool:
            for n, external_id in enumerate(ids):
                time.sleep(max(0.0, started + n / args.rate - time.monotonic()))
                pool.submit(submit, external_id)
        submitted_s = time.monotonic() - started
        deadline = time.monotonic() + DEADLINE_AFTER_LAST_S
        while receiver.count() < len(ids) and time.monotonic() < deadline:
            time.sleep(0.2)
        total_s = time.monotonic() - started

    store = TaskStore(connect(env), Keys())
    latencies = []
    for external_id in ids:
        succeed = [
            entry["at"] / 1000
            for entry in store.history(external_id)
            if entry.get("reported_status") == "succeed" and entry.get("outcome") == "applied"
        ]
        if succeed and external_id in receiver.first:
            latencies.append((receiver.first[external_id] - succeed[0]) * 1000)
    return {
        "tasks": args.tasks,
        "rate_per_s": args.rate,
        "workers": args.workers,
        "event": args.event,
        "delivered": len(latencies),
        "missing": args.tasks - len(latencies),
        "submitted_in_s": round(submitted_s, 1),
        "total_s": round(total_s, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50)),
            "p95": round(percentile(latencies, 0.95)),
            "p99": round(percentile(latencies, 0.99)),
            "max": round(max(latencies)),
            "mean": round(statistics.fmean(latencies)),
        }
        if latencies
        else None,
    }


if __name__ == "__main__":
    sys.exit(main())
