"""Benchmark: memory of the web and worker processes under a steady mixed load.

    .venv/bin/python bench/steady_state.py [--minutes 10] [--rate 2] [--reads 5] [--workers 2] [--sentinel]

Everything on loopback: a private redis-server, the Kling simulator, the service under gunicorn as the
Procfile runs it, `--workers` `python -m workers` processes and a webhook receiver. For `--minutes`, at a
fixed pace, the load is:

- `--rate` tasks submitted per second through the API. The simulator calls each back, signed
  (`KLING_WEBHOOK_SECRET` is set): `processing`, then `succeed` with a small MP4 to archive, one in ten
  `failed`. One task in four gets every callback twice (duplicates); one in five gets none, so the
  reconciliation pass polls Kling for it (`RECONCILE_AFTER_S=10`). Each finished task raises one
  webhook (`task.archived` or `task.failed`) to the receiver.
- `--reads` API reads per submit: the task in Kling's shape, the whole task, a page of the list.

Every 5 s the resident memory (RSS) of the web process (gunicorn's master and workers) and of the
worker processes (without their short-lived work horses) is sampled. After warm-up, the average over
the last minute is compared with the average over minute 2. Exits 1 when either has grown by 10 % or
more, a request failed, or tasks submitted are still unannounced two minutes after the load stops.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KLING_TOKEN,
    KLING_WEBHOOK_SECRET,
    NOTIFY_SECRET,
    Receiver,
    Stack,
    add_redis_option,
    code_version,
    conditions,
    connect,
    free_port,
    print_table,
    rss_kib,
    service_env,
    tree,
)
from kling_simulator import SimulatorServer

MAX_GROWTH = 0.10
SAMPLE_EVERY_S = 5
DRAIN_S = 120
CLIENTS = 8


class Load:
    """The paced mixed load; counts what it sent and what failed."""

    def __init__(self, base_url: str, sim: SimulatorServer, reads_per_submit: int) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.sim = sim
        self.reads_per_submit = reads_per_submit
        self.submitted: list[str] = []
        self.requests = 0
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def submit(self, n: int) -> None:
        name = f"steady-{n:06d}"
        final = "failed" if n % 10 == 3 else "succeed"
        steps = [
            {"status": "processing", "delay": 0.2, "send": n % 5 != 1, "copies": 2 if n % 4 == 0 else 1},
            {"status": final, "delay": 0.5, "send": n % 5 != 1, "copies": 2 if n % 4 == 0 else 1},
        ]
        self.sim.state.set_scenario(name, {"steps": steps, "webhook_secret": KLING_WEBHOOK_SECRET})
        body = {"image": "https://example.com/a.jpg", "prompt": "steady", "external_task_id": name}
        self._call("submit", "POST", "/v1/videos/image2video", body)
        with self._lock:
            self.submitted.append(name)

    def read(self, n: int) -> None:
        with self._lock:
            names = self.submitted[-50:]
        if not names:
            return
        name = names[n % len(names)]
        kind = n % 3
        if kind == 0:
            self._call("read", "GET", f"/v1/videos/image2video/{name}")
        elif kind == 1:
            self._call("read", "GET", f"/v1/tasks/{name}")
        else:
            self._call("read", "GET", "/v1/videos/image2video?pageNum=1&pageSize=30")

    def _call(self, kind: str, method: str, path: str, body: dict[str, str] | None = None) -> None:
        status: int | str
        try:
            status = self.http.request(method, path, json=body).status_code
        except httpx.HTTPError as error:
            status = type(error).__name__
        with self._lock:
            self.requests += 1
            if status != 200:
                key = f"{kind} {status}"
                self.failures[key] = self.failures.get(key, 0) + 1

    def run(self, seconds: float, rate: float) -> None:
        """Submits at `rate` per second with `reads_per_submit` reads between them, for `seconds`."""
        per_second = rate * (1 + self.reads_per_submit)
        total = int(seconds * per_second)
        started = time.monotonic()
        submits = reads = 0
        with ThreadPoolExecutor(CLIENTS) as pool:
            for n in range(total):
                time.sleep(max(0.0, started + n / per_second - time.monotonic()))
                if n % (1 + self.reads_per_submit) == 0:
                    pool.submit(self.submit, submits)
                    submits += 1
                else:
                    pool.submit(self.read, reads)
                    reads += 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10, help="length of the load (at least 3)")
    parser.add_argument("--rate", type=float, default=2, help="tasks submitted per second")
    parser.add_argument("--reads", type=int, default=5, help="API reads per task submitted")
    parser.add_argument("--workers", type=int, default=2, help="`python -m workers` processes")
    add_redis_option(parser)
    args = parser.parse_args()
    if args.minutes < 3:
        raise SystemExit("--minutes must be at least 3: minute 2 is compared with the last one")

    workdir = Path(tempfile.mkdtemp(prefix="bench-steady-"))
    receiver = Receiver()
    print_table([("machine before", conditions()), ("code", code_version())])
    samples: list[tuple[float, int, int]] = []  # seconds since start, web KiB, workers KiB
    with SimulatorServer(token=KLING_TOKEN) as sim, Stack(workdir) as stack:
        redis_env = stack.redis(sentinel=args.sentinel)
        port = free_port()
        env = service_env(
            workdir,
            redis_env,
            port,
            KLING_API_BASE=sim.url,
            KLING_API_TOKEN=KLING_TOKEN,
            KLING_WEBHOOK_SECRET=KLING_WEBHOOK_SECRET,
            KLING_MAX_CONCURRENCY="50",
            DOWNLOAD_ALLOWED_HOSTS="127.0.0.1",
            NOTIFY_WEBHOOK_URLS=receiver.url,
            NOTIFY_WEBHOOK_SECRET=NOTIFY_SECRET,
            RECONCILE_AFTER_S="10",
            RECONCILE_INTERVAL_S="5",
        )
        web_pid = stack.web(env).pid
        worker_pids = [process.pid for process in stack.workers(env, args.workers)]
        load = Load(f"http://127.0.0.1:{port}", sim, args.reads)
        seconds = args.minutes * 60
        stop = threading.Event()

        def sample() -> None:
            started = time.monotonic()
            while not stop.wait(SAMPLE_EVERY_S - (time.monotonic() - started) % SAMPLE_EVERY_S):
                web = sum(rss_kib(pid) for pid in tree(web_pid))
                samples.append((time.monotonic() - started, web, sum(rss_kib(pid) for pid in worker_pids)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load.run(seconds, args.rate)
        stop.set()
        sampler.join()
        load_end = conditions()
        drain_started = time.monotonic()
        wanted = set(load.submitted)
        deadline = time.monotonic() + DRAIN_S
        while not wanted <= set(receiver.first) and time.monotonic() < deadline:
            time.sleep(0.5)
        drained_s = time.monotonic() - drain_started
        redis_memory = connect(redis_env).info("memory")["used_memory_human"]
        load.http.close()
    receiver.stop()

    missing = len(set(load.submitted) - set(receiver.first))
    growth = {}
    rows = [("machine at the end of the load", load_end)]
    for column, label in ((1, "web (gunicorn)"), (2, f"workers ({args.workers})")):
        second = [s[column] for s in samples if 60 <= s[0] < 120]
        last = [s[column] for s in samples if s[0] >= seconds - 60]
        growth[label] = statistics.fmean(last) / statistics.fmean(second) - 1
        trace = " ".join(f"{s[column] / 1024:.0f}" for s in samples[:: -(-len(samples) // 20)])
        rows.append(
            (
                f"{label} RSS",
                f"minute 2 {statistics.fmean(second) / 1024:.1f} MiB, last minute "
                f"{statistics.fmean(last) / 1024:.1f} MiB: {growth[label]:+.1%} (target < {MAX_GROWTH:.0%})",
            )
        )
        rows.append((f"  {label} MiB over time", trace))
    rows += [
        ("load", f"{args.minutes:g} min, {len(load.submitted)} tasks, {load.requests} API requests"),
        ("failed requests", str(load.failures or "none")),
        ("webhooks", f"{len(receiver.first)} tasks announced ({receiver.received} webhooks)"),
        ("backlog", f"{missing} unannounced after {drained_s:.0f} s of drain"),
        ("Redis used memory", redis_memory),
    ]
    print_table(rows)
    passed = not load.failures and not missing and all(g < MAX_GROWTH for g in growth.values())
    if passed:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"process logs in {workdir}", file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
