"""Benchmark: from Kling's `succeed` callback to the first downstream webhook delivered, per task.

    .venv/bin/python bench/notify_latency.py [--tasks 1000] [--rate 8] [--workers 2] [--event task.archived]

Everything runs on this machine, on loopback: a private redis-server (no persistence), the Kling
simulator (each task succeeds 0.3 s after create, with its small MP4), the service under gunicorn as the
Procfile runs it, `python -m workers` processes, and a webhook receiver. Tasks are submitted at a fixed
rate; for each, the latency is from the moment the service recorded the `succeed` callback (the task's
history) to the moment the receiver got the webhook. With the default filter the first webhook is
`task.archived`, so the time includes archiving the video; `--event task.succeeded` measures the
notification path alone. Exits 1 when a webhook is missing at the deadline.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import redis
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kling_simulator import SimulatorServer
from webhook_service.domain.store import TaskStore
from webhook_service.keys import Keys

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
SECRET = "whsec_" + base64.b64encode(b"bench-notify-secret-0123456789").decode()
SUCCEED_AFTER_S = 0.3
DEADLINE_AFTER_LAST_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Receiver:
    """Keeps the arrival time of the first webhook for each task; answers 204 at once."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        at = time.time()
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        external_id = json.loads(body)["data"]["external_task_id"]
        with self._lock:
            self.first.setdefault(external_id, at)
        start_response("204 No Content", [])
        return []

    def count(self) -> int:
        with self._lock:
            return len(self.first)

    def stop(self) -> None:
        self._server.shutdown()


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    connection = redis.Redis.from_url(url)

    def pings() -> bool:
        try:
            return bool(connection.ping())
        except redis.RedisError:
            return False

    wait_until(pings, 10, "redis-server")
    return process, url


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=8.0, help="tasks submitted per second")
    parser.add_argument("--workers", type=int, default=2, help="`python -m workers` processes")
    parser.add_argument("--event", default="task.archived", help="the webhook filter (NOTIFY_WEBHOOK_EVENTS)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per webhook received

    workdir = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    processes: list[subprocess.Popen[bytes]] = []
    receiver = Receiver()
    with SimulatorServer(token=TOKEN) as sim:
        sim.state.set_default({"steps": [{"status": "succeed", "delay": SUCCEED_AFTER_S}]})
        redis_process, redis_url = start_redis(workdir)
        processes.append(redis_process)
        port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "bench-secret-key-0123456789",
            "KLING_API_BASE": sim.url,
            "KLING_API_TOKEN": TOKEN,
            "KLING_MAX_CONCURRENCY": "100000",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "PORT": str(port),
            "ARCHIVE_URL": str(workdir / "archive"),
            "ARCHIVE_SPOOL_DIR": str(workdir / "spool"),
            "DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1",
            "NOTIFY_WEBHOOK_URLS": receiver.url,
            "NOTIFY_WEBHOOK_SECRET": SECRET,
            "NOTIFY_WEBHOOK_EVENTS": args.event,
        }
        logs = (workdir / "processes.log").open("wb")
        try:
            web = [str(ROOT / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"]
            processes.append(subprocess.Popen(web, cwd=ROOT, env=env, stdout=logs, stderr=logs))
            for _ in range(args.workers):
                worker = [sys.executable, "-m", "workers"]
                processes.append(subprocess.Popen(worker, cwd=ROOT, env=env, stdout=logs, stderr=logs))
            result = run(args, f"http://127.0.0.1:{port}", redis_url, receiver)
        finally:
            for process in reversed(processes):
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            receiver.stop()
    print(json.dumps(result, indent=2))
    if result["missing"]:
        print(f"missing webhooks; process logs in {workdir}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, base_url: str, redis_url: str, receiver: Receiver) -> dict[str, Any]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        wait_until(lambda: _answers(http), 30, "the service to answer")
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

    store = TaskStore(redis.Redis.from_url(redis_url), Keys())
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


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/healthz").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
