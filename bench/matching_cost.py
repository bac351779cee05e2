"""Benchmark: does matching a callback to its task cost more when Redis holds a million tasks?

    .venv/bin/python bench/matching_cost.py [--stored 1000000] [--sample 1000] [--callbacks 4000] [--rate 250]
                                            [--sentinel]

Every lookup on the callback path is a key read (the token names the task; `task-id:<id>` maps Kling's
id), so the latency should not depend on how many tasks are stored. This checks it. The service runs
as the Procfile runs it, with `KLING_WEBHOOK_SECRET` set, on a private redis-server. A sample of
`--sample` tasks (`submitted`) gets `--callbacks` signed callbacks (one in five a change, the rest
duplicates, as in bench/callback_ingest.py) at a fixed `--rate`, in three phases. Each phase first
sends as many callbacks unmeasured (right after a million records are written, the first seconds of
traffic are several times slower, whatever is stored later), and the sample is reset to the same
state before the warm-up and before the measured run:

1. only the sample stored (1,000 tasks);
2. `--stored` tasks stored: the sample plus finished tasks bulk-loaded with the store's key layout;
3. the database emptied and only the sample stored again: the same as 1.

Phases 1 and 3 bracket phase 2, so phase 2 is compared with their average: a machine that gets busier
or quieter during the run (others' tests share it) then moves both sides alike, and the gap between 1
and 3 shows how much the figures move on their own. Latency runs from when each request was due (an
open-loop, paced client). Exits 1 when phase 2's median is more than 10 % away from the average of
phases 1 and 3, or a callback is answered other than 200. The mean and the tail are printed but not
judged: on a shared machine a neighbour's burst moves them more than anything measured here.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KLING_WEBHOOK_SECRET,
    CallbackSigner,
    PacedResult,
    Stack,
    add_redis_option,
    callback_body,
    callback_mix,
    code_version,
    conditions,
    connect,
    free_port,
    latency_summary,
    load_tasks,
    paced_run,
    print_table,
    service_env,
)
from webhook_service.config import Settings
from webhook_service.domain.clock import now_ms
from webhook_service.domain.tasks import Status
from webhook_service.keys import Keys

MAX_DIFFERENCE = 0.10
CHANGE_SHARE = 0.2


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=1_000_000, help="tasks stored in phase 2")
    parser.add_argument("--sample", type=int, default=1000, help="tasks that get the callbacks")
    parser.add_argument("--callbacks", type=int, default=4000, help="callbacks per phase")
    parser.add_argument("--rate", type=float, default=250, help="callbacks per second")
    add_redis_option(parser)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-matching-"))
    print_table([("machine before", conditions()), ("code", code_version())])
    phases: list[tuple[str, PacedResult, str]] = []
    with Stack(workdir) as stack:
        redis_env = stack.redis(sentinel=args.sentinel)
        connection = connect(redis_env)
        port = free_port()
        env = service_env(workdir, redis_env, port, KLING_WEBHOOK_SECRET=KLING_WEBHOOK_SECRET)
        settings = Settings.from_env(env)
        stack.web(env)
        sample = [f"match-sample-{n:06d}" for n in range(args.sample)]

        def phase(label: str) -> None:
            reset_sample(connection, sample)
            send(port, settings, sample, args.callbacks, args.rate)
            reset_sample(connection, sample)
            stored = connection.zcard(Keys().tasks)
            result = send(port, settings, sample, args.callbacks, args.rate)
            memory = connection.info("memory")["used_memory_human"]
            phases.append((f"{label} ({stored:,} stored, Redis {memory})", result, conditions()))

        phase("1")
        started = time.monotonic()
        filler = [f"match-filler-{n:07d}" for n in range(args.stored - args.sample)]
        load_tasks(connection, filler, args.sample, Status.SUCCEED)
        load_s = time.monotonic() - started
        phase("2")
        connection.flushdb()
        phase("3")

    rows = [("bulk load", f"{len(filler):,} tasks in {load_s:.0f} s")]
    summaries = []
    all_ok = True
    for label, result, load in phases:
        summary = latency_summary(result.latencies_ms)
        summaries.append(summary)
        all_ok = all_ok and set(result.statuses) == {200}
        rows.append(
            (
                f"phase {label}",
                f"{result.rate:.0f} req/s, latency ms {summary}, statuses {result.statuses}, "
                f"{result.late_starts} sent > 5 ms late; {load}",
            )
        )
    small, big, again = summaries
    bracket = {stat: (small[stat] + again[stat]) / 2 for stat in ("p50", "mean", "p99")}
    difference = big["p50"] / bracket["p50"] - 1
    others = ", ".join(f"{stat} {big[stat] / bracket[stat] - 1:+.1%}" for stat in ("mean", "p99"))
    rows.append(
        (
            "phase 2 vs phases 1+3",
            f"p50 {difference:+.1%} (target within ±{MAX_DIFFERENCE:.0%}); not judged: {others}",
        )
    )
    drift = ", ".join(f"{stat} {again[stat] / small[stat] - 1:+.1%}" for stat in ("p50", "mean"))
    rows.append(("phase 3 vs phase 1", f"{drift} (noise: the same setup twice)"))
    print_table(rows)
    passed = all_ok and abs(difference) <= MAX_DIFFERENCE
    if all_ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"some callbacks were not answered 200; logs in {workdir}", file=sys.stderr)
    return 0 if passed else 1


def reset_sample(connection: redis.Redis, sample: list[str]) -> None:
    """The sample back to freshly accepted tasks: same record, a two-entry history."""
    pipe = connection.pipeline(transaction=False)
    for name in sample:
        pipe.delete(Keys().task_history(name))
    pipe.execute()
    load_tasks(connection, sample, 0, Status.SUBMITTED)


def send(port: int, settings: Settings, sample: list[str], count: int, rate: float) -> PacedResult:
    """The same mix of callbacks every phase (same seed), signed just before it is sent."""
    signer = CallbackSigner(settings)
    created = now_ms()
    plan = callback_mix(sample, 0, count, CHANGE_SHARE, random.Random(7))
    requests = [
        signer.request(name, callback_body(name, task_id, status, created), f"msg_{n:07d}")
        for n, (name, task_id, status) in enumerate(plan)
    ]
    return paced_run(port, requests, rate)


if __name__ == "__main__":
    sys.exit(main())
