"""Benchmark: Kling's callbacks and the health checks while the account is full and synchronous creates
pile up on the web tier.

    .venv/bin/python bench/stalled_account.py [--creates 50] [--rounds 3] [--workers 2] [--sentinel]

Everything on loopback: a private redis-server, the Kling simulator holding every task open (it says
`processing` and never calls back), the service under gunicorn as the Procfile runs it (its defaults:
two workers per core of two threads, SUBMIT_WAITING_MAX 1, SUBMIT_WAIT_S 10) and `--workers`
`python -m workers`, running throughout as in production (each queued task's dispatch job runs and
finds no slot). The account's KLING_MAX_CONCURRENCY (2) slots are taken first. Then, each round,
`--creates` synchronous creates are sent at once, one thread each; while any is unanswered, a prober
sends `GET /healthz` and a repeated callback (`processing` again, for a task that is processing) back
to back and times each. Prints, per round and over all rounds, the creates' statuses and times and the
probes' latencies. Exits 1 when a create got anything but 200 or 202, or a probe's p99 is 200 ms or more.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rq import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KLING_TOKEN,
    SECRET_KEY,
    Stack,
    add_redis_option,
    code_version,
    conditions,
    connect,
    free_port,
    latency_summary,
    print_table,
    service_env,
    wait_until,
)
from kling_simulator import SimulatorServer
from webhook_service.config import Settings
from webhook_service.domain.callback_tokens import callback_url_for

KLING_LIMIT = 2
P99_GOAL_MS = 200.0
PROBES_MAX = 20_000
ROUND_DEADLINE_S = 600
FLOOD_S = 1.0  # the creates the budget turns away are all answered within it: the busiest second
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "bench"}
HELD_OPEN = {"steps": [{"status": "processing", "delay": 0, "send": False}]}


def create(http: httpx.Client, external_id: str, start: threading.Barrier) -> tuple[int, float]:
    start.wait(timeout=60)
    began = time.perf_counter()
    answer = http.post("/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id})
    return answer.status_code, time.perf_counter() - began


def timed_ms(call: Callable[[], httpx.Response]) -> float:
    began = time.perf_counter()
    answer = call()
    assert answer.status_code == 200, answer.text
    return (time.perf_counter() - began) * 1000


def one_round(
    http: httpx.Client, callback: str, repeat: dict[str, str], prefix: str, creates: int
) -> dict[str, Any]:
    ids = [f"{prefix}-{n:03d}" for n in range(creates)]
    health_ms: list[float] = []
    callback_ms: list[float] = []
    probe_at_s: list[float] = []  # when each pair of probes began, from the round's start
    deadline = time.monotonic() + ROUND_DEADLINE_S
    with ThreadPoolExecutor(max_workers=creates) as pool:
        start = threading.Barrier(creates + 1)
        answers = [pool.submit(create, http, external_id, start) for external_id in ids]
        start.wait(timeout=60)
        began_round = time.perf_counter()
        while not all(a.done() for a in answers) and len(health_ms) < PROBES_MAX:
            if time.monotonic() > deadline:
                raise SystemExit(f"the creates were still open after {ROUND_DEADLINE_S} s")
            probe_at_s.append(time.perf_counter() - began_round)
            health_ms.append(timed_ms(lambda: http.get("/healthz")))
            callback_ms.append(timed_ms(lambda: http.post(callback, json=repeat)))
        results = [a.result() for a in answers]
    return {
        "statuses": [status for status, _ in results],
        "create_s": [seconds for _, seconds in results],
        "health_ms": health_ms,
        "callback_ms": callback_ms,
        "probe_at_s": probe_at_s,
        "seconds": time.perf_counter() - began_round,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creates", type=int, default=50, help="synchronous creates at once, each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="`python -m workers` processes")
    add_redis_option(parser)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-stalled-"))
    print_table([("machine before", conditions()), ("code", code_version())])
    rounds = []
    with SimulatorServer(token=KLING_TOKEN) as sim, Stack(workdir) as stack:
        sim.state.set_default(HELD_OPEN)
        redis_env = stack.redis(sentinel=args.sentinel)
        port = free_port()
        env = service_env(
            workdir,
            redis_env,
            port,
            KLING_API_BASE=sim.url,
            KLING_API_TOKEN=KLING_TOKEN,
            KLING_MAX_CONCURRENCY=str(KLING_LIMIT),
        )
        stack.web(env)
        stack.workers(env, args.workers)
        connection = connect(redis_env)
        wait_until(lambda: Worker.count(connection=connection) >= args.workers, 30, "the workers")
        limits = httpx.Limits(max_connections=args.creates + 8)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits) as http:
            for n in range(KLING_LIMIT):
                answer = http.post(
                    "/v1/videos/image2video", json={**IMAGE, "external_task_id": f"holder-{n}"}
                )
                assert answer.status_code == 200, answer.text
            task_id = http.get("/v1/videos/image2video/holder-0").json()["data"]["task_id"]
            settings = Settings.from_env(
                {"SECRET_KEY": SECRET_KEY, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
            )
            callback = callback_url_for(settings, "holder-0")
            repeat = {"task_id": task_id, "task_status": "processing"}
            for n in range(args.rounds):
                rounds.append(one_round(http, callback, repeat, f"round{n}", args.creates))

    rows: list[tuple[str, object]] = [("machine after", conditions())]
    for n, measured in enumerate([*rounds, _merged(rounds)]):
        label = f"round {n + 1}" if n < len(rounds) else "all rounds"
        statuses = measured["statuses"]
        create_s = measured["create_s"]
        rows += [
            (label, f"{len(statuses)} creates answered in {measured['seconds']:.2f} s"),
            ("  statuses", {s: statuses.count(s) for s in sorted(set(statuses))}),
            (
                "  create s",
                {k: round(v / 1000, 3) for k, v in latency_summary([s * 1000 for s in create_s]).items()},
            ),
            ("  waited > 1 s", sum(s > 1 for s in create_s)),
            (
                "  /healthz ms",
                {"probes": len(measured["health_ms"]), **latency_summary(measured["health_ms"])},
            ),
            (
                "  callback ms",
                {"probes": len(measured["callback_ms"]), **latency_summary(measured["callback_ms"])},
            ),
        ]
        flood = [n for n, at in enumerate(measured["probe_at_s"]) if at < FLOOD_S]
        if flood:
            for name in ("health_ms", "callback_ms"):
                during = [measured[name][n] for n in flood]
                summary = {"probes": len(during), **latency_summary(during)}
                rows.append((f"  {name.split('_')[0]} ms, first {FLOOD_S:.0f} s", summary))
    print_table(rows)
    overall = _merged(rounds)
    missed = [
        name for name in ("health_ms", "callback_ms") if latency_summary(overall[name])["p99"] >= P99_GOAL_MS
    ]
    if set(overall["statuses"]) - {200, 202} or missed:
        print(
            f"goal missed: {missed or 'a create answered neither 200 nor 202'}; logs in {workdir}",
            file=sys.stderr,
        )
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _merged(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("statuses", "create_s", "health_ms", "callback_ms", "probe_at_s")
    merged: dict[str, Any] = {key: [value for measured in rounds for value in measured[key]] for key in keys}
    merged["seconds"] = sum(measured["seconds"] for measured in rounds)
    return merged


if __name__ == "__main__":
    sys.exit(main())
