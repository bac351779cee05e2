"""What the service's benchmarks share: their processes, a paced HTTP client and the figures they print.

Each benchmark runs the real thing on loopback: a private Redis (never one it did not start: one
redis-server, or with `--sentinel` a Sentinel group of its own), the web process exactly as the
Procfile starts it, `python -m workers`. The benchmarks' own connections are the service's
(`connect`), made from the settings its processes get, so with `--sentinel` they too find the primary
through the sentinels. They print the machine's load beside their figures because on a shared 2-core
machine a busy neighbour moves the numbers more than most changes to the code do.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from standardwebhooks import Webhook
from werkzeug.serving import WSGIRequestHandler, make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.redis_servers import PrivateRedis, SentinelGroup
from bench.redis_servers import free_port as free_port
from webhook_service.config import Settings, redis_settings
from webhook_service.domain.callback_tokens import callback_url_for
from webhook_service.domain.clock import now_ms
from webhook_service.domain.tasks import Status, Task
from webhook_service.keys import Keys
from webhook_service.services import redis_connection

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-secret-key-0123456789"
KLING_TOKEN = "bench-kling-token"
KLING_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"bench-kling-callback-secret-0123").decode()
NOTIFY_SECRET = "whsec_" + base64.b64encode(b"bench-notify-secret-0123456789").decode()
STOP_TIMEOUT_S = 20
KEYS = Keys()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """The figures every latency line prints, in ms, rounded for reading rather than for arithmetic."""
    return {
        "p50": round(percentile(latencies_ms, 0.50), 2),
        "p90": round(percentile(latencies_ms, 0.90), 2),
        "p99": round(percentile(latencies_ms, 0.99), 2),
        "max": round(max(latencies_ms), 2),
        "mean": round(statistics.fmean(latencies_ms), 2),
    }


def conditions() -> str:
    """The machine and how busy it is right now (others' tests share it), and the share of its CPU
    time the host gave to other machines since the previous reading (see `StolenTime`)."""
    global _since_last_reading
    one, five, fifteen = os.getloadavg()
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    stolen, _since_last_reading = _since_last_reading.share(), StolenTime()
    return (
        f"{os.cpu_count()} cores, {memory_kib / 1024**2:.0f} GiB; "
        f"load average {one:.2f} {five:.2f} {fifteen:.2f}; CPU stolen by the host {stolen:.1%}"
    )


class StolenTime:
    """The share of this machine's CPU time that the hypervisor gave to other machines from now on
    (`steal` in /proc/stat). These are virtual machines on shared hosts: when the share is more than
    a few percent, a run measured the neighbours as much as the code, latency tails most of all."""

    def __init__(self) -> None:
        self.start = _cpu_times()

    def share(self) -> float:
        spent = [now - then for now, then in zip(_cpu_times(), self.start, strict=True)]
        total = sum(spent)
        return spent[_STEAL] / total if total else 0.0


# /proc/stat's first line: user nice system idle iowait irq softirq steal (in ticks, all CPUs); the
# guest columns after them are already counted in user and nice.
_STEAL = 7


def _cpu_times() -> list[int]:
    with open("/proc/stat") as stat:
        ticks = stat.readline().split()[1:]  # after the line's name, "cpu"
    return [int(count) for count in ticks[: _STEAL + 1]]


_since_last_reading = StolenTime()


def code_version() -> str:
    """The commit measured, and the service's files that differed from it (others edit the same tree)."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    changed = subprocess.run(
        [*git, "status", "--porcelain", "--", "webhook_service", "workers", "wsgi.py", "gunicorn.conf.py"],
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    dirty = sorted(line[3:] for line in changed if line.strip())
    return f"{commit.strip()}" + (f", uncommitted changes in {', '.join(dirty)}" if dirty else "")


def rss_kib(pid: int) -> int:
    """Resident memory of one process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process: gunicorn's workers, an RQ worker's current work horse."""
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(child) for child in path.read_text().split())
        except OSError:
            continue
    return found


def cpu_seconds(pids: Sequence[int], *, reaped: bool = False) -> float:
    """CPU time (user + system) the processes have used so far: a cost that, unlike a rate, hardly
    moves when other work shares the machine. `reaped` adds their children that have exited (an RQ
    worker's work horses)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        if reaped:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """A process and its children (gunicorn's master and workers)."""
    return [pid, *children(pid)]


class WorkerSplit:
    """Each gunicorn worker's CPU time from now on. gunicorn's workers share one listening socket, so
    a burst of keep-alive connections can land mostly on one worker, which then runs the load on one
    core while the other idles: this shows whether a run was spread evenly."""

    def __init__(self, master_pid: int) -> None:
        self.workers = children(master_pid)
        self.before = [cpu_seconds([pid]) for pid in self.workers]

    def since(self) -> list[float]:
        return [cpu_seconds([pid]) - before for pid, before in zip(self.workers, self.before, strict=True)]


@dataclass
class Stack:
    """The processes of one benchmark run, stopped together (in reverse order) however the run ends.

    Their output goes to files in `workdir`, kept when a run fails so its logs can be read.
    """

    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis_pid: int = 0  # the redis-server the service writes to: the primary, with Sentinel
    _redis: PrivateRedis | SentinelGroup | None = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def _start(
        self, command: list[str], env: dict[str, str] | None, log_name: str
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{log_name}.log").open("ab")
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def redis(self, *, sentinel: bool = False) -> dict[str, str]:
        """A private Redis without persistence, its files and logs in `workdir`; returns the settings that
        point the service at it, for `service_env`.

        One redis-server on a free loopback port, or with `sentinel` a group of the run's own, as
        docs/deployment.md runs one: a primary, its replica and three sentinels (quorum 2, a primary
        judged down after 5 s). REDIS_URL then names a host that does not exist: a connection that
        did not ask the sentinels fails instead of finding some other Redis.
        """
        options = ("--appendonly", "no")
        if sentinel:
            group = SentinelGroup(down_after_ms=5000, config=options, directory=self.workdir)
            self._redis = group.start()
            self.redis_pid = group.primary.pid
            env = {**group.env, "REDIS_URL": "redis://primary-named-by-the-sentinels.invalid/0"}
            ports = ", ".join(str(port) for port in group.sentinel_ports)
            where = f"primary :{group.primary.port}, replica :{group.replica.port}, sentinels {ports}"
            described = f"Sentinel group of the run's own ({where}), every connection through it"
        else:
            server = self._redis = PrivateRedis(*options, dies_with_run=True, directory=self.workdir).start()
            self.redis_pid = server.pid
            env = {"REDIS_URL": server.url}
            described = f"one redis-server of the run's own, :{server.port}"
        connection = connect(env)
        wait_until(lambda: _pings(connection), 10, "the private Redis through the service's connection")
        print_table([("redis", described)])
        return env

    def web(self, env: dict[str, str], app: str = "wsgi:app") -> subprocess.Popen[bytes]:
        """The web process as the Procfile runs it, `gunicorn -c gunicorn.conf.py <app>`, on loopback only."""
        bind = f"127.0.0.1:{env['PORT']}"  # the configuration binds every interface, for a platform's router
        command = [str(ROOT / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py", "-b", bind, app]
        process = self._start(command, env, "web")
        base = f"http://127.0.0.1:{env['PORT']}"
        wait_until(lambda: _answers(f"{base}/healthz"), 30, f"{app} to answer")
        return process

    def workers(self, env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
        """`python -m workers`, as the Procfile runs it, `count` times."""
        return [self._start([sys.executable, "-m", "workers"], env, "workers") for _ in range(count)]

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.processes)):
            self.stop(process)
        if self._redis is not None:  # started first, stopped last
            self._redis.stop()
            self._redis = None


def add_redis_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sentinel",
        action="store_true",
        help="run Redis as a Sentinel group of the run's own (primary, replica, three sentinels) "
        "and make every connection through the sentinels",
    )


def service_env(workdir: Path, redis_env: Mapping[str, str], port: int, **extra: str) -> dict[str, str]:
    """The service's settings for a benchmark: the private Redis (`Stack.redis`), archive and metrics in
    the run's directory. Nothing about Redis comes from the caller's environment, nor any setting from
    `.env` or a running `scripts/up`'s file: a developer's REDIS_SENTINELS must not point a benchmark at
    their Redis."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith("REDIS_")}
    return {
        **inherited,
        "READ_SETTINGS_FILES": "false",
        **redis_env,
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
        "ARCHIVE_URL": str(workdir / "archive"),
        "ARCHIVE_SPOOL_DIR": str(workdir / "spool"),
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        **extra,
    }


def connect(env: Mapping[str, str]) -> redis.Redis:
    """A connection to the benchmark's Redis made as the service's processes make theirs, from the same
    settings (`service_env`, or `Stack.redis`'s): through the sentinels when REDIS_SENTINELS is set."""
    return redis_connection(redis_settings(env))


def _pings(connection: redis.Redis) -> bool:
    try:
        return bool(connection.ping())
    except redis.RedisError:
        return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Request:
    """One HTTP request, ready to go on the wire as is."""

    path: str
    headers: dict[str, str]
    body: bytes

    def wire(self) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class PacedResult:
    """Latencies from the moment each request was due, so a stall counts against every request it delays."""

    latencies_ms: list[float]
    statuses: dict[int, int]
    sent: int
    seconds: float
    late_starts: int  # requests that left more than 5 ms after they were due: the client fell behind

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def paced_run(
    port: int, requests: Sequence[Request], rate: float, connections: int = 32, timeout_s: float = 600
) -> PacedResult:
    """Send `requests` at a fixed `rate` over keep-alive connections; bounded by count and `timeout_s`.

    An open-loop client: request n is due at start + n/rate whatever happened to the earlier ones, and
    its latency runs from then, not from when a connection was free to send it, so a slow server cannot
    hide its queueing by slowing the client down (coordinated omission).
    """
    return asyncio.run(asyncio.wait_for(_paced(port, requests, rate, connections), timeout_s))


async def _paced(port: int, requests: Sequence[Request], rate: float, connections: int) -> PacedResult:
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    late = 0

    async def connection() -> None:
        nonlocal late
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (item := await due.get()) is not None:
                due_at, wire = item
                if time.perf_counter() - due_at > 0.005:
                    late += 1
                writer.write(wire)
                status = await _read_response(reader)
                latencies.append((time.perf_counter() - due_at) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    wires = [request.wire() for request in requests]
    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    started = time.perf_counter()
    for n, wire in enumerate(wires):
        due_at = started + n / rate
        delay = due_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((due_at, wire))
    for _ in tasks:
        due.put_nowait(None)
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    return PacedResult(latencies, statuses, len(wires), seconds, late)


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return int(lines[0].split()[1])


def metric_totals(text: str, name: str) -> dict[str, float]:
    """A Prometheus counter's samples by their label string, from /metrics text."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name):
            labels, _, value = line.rpartition(" ")
            totals[labels] = float(value)
    return totals


def print_table(rows: list[tuple[str, Any]]) -> None:
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label + ':':<{width}}{value}")


# Tasks and Kling's callbacks about them. Records are written straight into Redis with the store's key
# layout (webhook_service/keys.py), as `TaskStore.create` and a create answer leave
# them: creating a million tasks through the API would take hours and measure the API, not the callbacks.

FIRST_UPSTREAM_ID = 8 * 10**17
VIDEO_URL = "https://cdn.example.com/kling/{task_id}/video.mp4"
BULK_BATCH = 5_000


def upstream_id(n: int) -> str:
    """Kling's task id for the n-th task: 18 digits, like Kling's own."""
    return str(FIRST_UPSTREAM_ID + n)


def load_tasks(connection: redis.Redis, names: Sequence[str], first: int, status: Status) -> None:
    """Record `names` as tasks Kling has accepted (`submitted`, `processing`) or finished (`succeed`).

    Task n's upstream id is `upstream_id(first + n)`. Open tasks also go into the open-task index and
    hold a slot, as they would after their create answer.
    """
    created = now_ms()
    for start in range(0, len(names), BULK_BATCH):
        pipe = connection.pipeline(transaction=False)
        for offset, name in enumerate(names[start : start + BULK_BATCH]):
            task_id = upstream_id(first + start + offset)
            task = Task(
                external_task_id=name,
                status=status,
                task_id=task_id,
                model_name="kling-v2-master",
                created_at=created,
                updated_at=created,
                upstream_created_at=created,
                upstream_updated_at=created,
                submit_attempts=1,
            )
            if status is Status.SUCCEED:
                task.task_result = {"videos": [_video(task_id)]}
                task.final_unit_deduction = "1"
            key = KEYS.task(name)
            request = {"model_name": "kling-v2-master", "image": IMAGE_URL, "prompt": "bench"}
            pipe.set(key, task.to_json())
            pipe.set(f"{key}:request", json.dumps({**request, "external_task_id": name}))
            pipe.rpush(
                f"{key}:history",
                json.dumps({"at": created, "event": "created"}),
                json.dumps({"at": created, "event": "status", "source": "create", "outcome": "applied"}),
            )
            pipe.set(KEYS.task_id(task_id), name)
            pipe.zadd(KEYS.tasks, {name: created})
            if not status.terminal:
                pipe.zadd(KEYS.open, {name: created + 120_000})
                pipe.zadd(KEYS.slots, {name: created})
        pipe.execute()


IMAGE_URL = "https://example.com/landscape.jpg"


def _video(task_id: str) -> dict[str, str]:
    return {"id": f"{task_id}-v", "url": VIDEO_URL.format(task_id=task_id), "duration": "5"}


def callback_body(name: str, task_id: str, status: str, created_ms: int) -> bytes:
    """Kling's callback in its legacy shape, as the simulator (and Kling) send it."""
    body: dict[str, Any] = {
        "task_id": task_id,
        "task_status": status,
        "task_status_msg": "content policy" if status == "failed" else "",
        "created_at": created_ms,
        "updated_at": created_ms + 1000,
        "final_unit_deduction": "1" if status == "succeed" else "0",
        "task_info": {"external_task_id": name},
    }
    if status == "succeed":
        body["task_result"] = {"videos": [_video(task_id)]}
    return json.dumps(body).encode()


class CallbackSigner:
    """Signed requests to the service's per-task callback URLs, as Kling sends them.

    The Standard Webhooks timestamp is the moment of signing, and the service accepts it for 5
    minutes: sign just before sending.
    """

    def __init__(self, settings: Settings, secret: str = KLING_WEBHOOK_SECRET) -> None:
        self.settings = settings
        self.webhook = Webhook(secret)
        self.paths: dict[str, str] = {}

    def request(self, name: str, body: bytes, msg_id: str) -> Request:
        path = self.paths.get(name)
        if path is None:
            url = callback_url_for(self.settings, name)
            path = self.paths[name] = url.removeprefix(self.settings.public_base_url)
        now = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.webhook.sign(msg_id, now, body.decode()),
        }
        return Request(path, headers, body)


_NEXT_STATUS = {"submitted": "processing", "processing": "succeed"}


def callback_mix(
    names: Sequence[str], first: int, count: int, change_share: float, rng: random.Random
) -> list[tuple[str, str, str]]:
    """`count` callbacks (name, upstream id, status) for tasks that start `submitted`.

    A `change_share` of them moves a task on (processing, then succeed, one in ten failed); the rest
    repeat the task's latest status, as Kling's duplicates do. Every prefix of the list has the same
    mix, so a run that sends only part of it still sends that mix.
    """
    status = dict.fromkeys(names, "submitted")
    movable = list(names)
    index = {name: first + n for n, name in enumerate(names)}
    plan = []
    for _ in range(count):
        if movable and rng.random() < change_share:
            slot = rng.randrange(len(movable))
            name = movable[slot]
            new = _NEXT_STATUS[status[name]]
            if new == "succeed" and rng.random() < 0.1:
                new = "failed"
            status[name] = new
            if new in ("succeed", "failed"):
                movable[slot] = movable[-1]
                movable.pop()
        else:
            name = names[rng.randrange(len(names))]
        plan.append((name, upstream_id(index[name]), status[name]))
    return plan


class Receiver:
    """A downstream webhook endpoint on loopback: the arrival time of each task's first webhook."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.received = 0
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=_Quiet)
        self.url = f"http://127.0.0.1:{self._server.server_port}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        at = time.time()
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        external_id = json.loads(body)["data"]["external_task_id"]
        with self._lock:
            self.received += 1
            self.first.setdefault(external_id, at)
        start_response("204 No Content", [])
        return []

    def count(self) -> int:
        with self._lock:
            return len(self.first)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Quiet(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass
