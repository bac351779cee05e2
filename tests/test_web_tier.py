"""A web tier nobody can stall: with the account's upstream slots full, fifty synchronous creates at
once, served by gunicorn as the Procfile serves it, leave Kling's callbacks and the health checks
answering at once; every create is accepted, and every accepted task reaches Kling once slots free."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from kling_simulator import SimulatorServer
from tests.conftest import Workers
from tests.support import free_port, wait_for
from tests.test_gunicorn import start_gunicorn
from tests.test_redis_durability import refused_web_start
from webhook_service.config import Settings
from webhook_service.domain.callback_tokens import callback_url_for

CREATES = 50
KLING_LIMIT = 2
WEB_WORKERS = 4
SUBMIT_WAIT_S = 5.0
P99_BOUND_MS = 200.0
PROBES_MAX = 2000  # bounds on the probe loop besides the creates' end, in count and in time
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a cat"}
HELD_OPEN = {"steps": [{"status": "processing", "delay": 0, "send": False}]}  # Kling keeps them, silent
QUICK_FAILURE = {"steps": [{"status": "failed", "delay": 0.05, "message": "declined"}]}  # no archive work


@dataclass
class Served:
    base: str
    env: dict[str, str]
    settings: Settings


@pytest.fixture
def served(env: dict[str, str], simulator: SimulatorServer, tmp_path: Path) -> Iterator[Served]:
    simulator.state.set_default(HELD_OPEN)
    port = free_port()
    service_env = {
        **env,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "KLING_MAX_CONCURRENCY": str(KLING_LIMIT),
        "SUBMIT_WAIT_S": str(SUBMIT_WAIT_S),
        "WEB_CONCURRENCY": str(WEB_WORKERS),
        "WEB_THREADS": "3",
    }
    with (tmp_path / "gunicorn.log").open("w") as log:
        process = start_gunicorn(service_env, port, tmp_path / "metrics", stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/healthz"), timeout=30, what="gunicorn to serve")
        yield Served(base, service_env, Settings.from_env(service_env))
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_a_full_account_stalls_neither_callbacks_nor_health_checks(
    served: Served, simulator: SimulatorServer
) -> None:
    http = httpx.Client(base_url=served.base, timeout=60, limits=httpx.Limits(max_connections=CREATES + 8))
    holders = [f"holder-{n}" for n in range(KLING_LIMIT)]
    for holder in holders:  # the account's slots, taken and kept
        assert _create(http, holder)[0] == 200
    callback = callback_url_for(served.settings, holders[0])
    repeat = {"task_id": _task(http, holders[0])["task_id"], "task_status": "processing"}

    ids = [f"burst-{n:02d}" for n in range(CREATES)]
    with ThreadPoolExecutor(max_workers=CREATES) as pool:
        start = threading.Barrier(CREATES + 1)
        answers = [pool.submit(_create, http, external_id, start) for external_id in ids]
        start.wait(timeout=30)
        health_ms, callback_ms = [], []
        deadline = time.monotonic() + SUBMIT_WAIT_S + 60

        def probing() -> bool:
            return len(health_ms) < PROBES_MAX and time.monotonic() < deadline

        while not all(answer.done() for answer in answers) and probing():
            health_ms.append(_timed_ms(lambda: http.get("/healthz")))
            callback_ms.append(_timed_ms(lambda: http.post(callback, json=repeat)))
        statuses = [answer.result()[0] for answer in answers]
        create_s = [answer.result()[1] for answer in answers]

    assert len(health_ms) >= 10, "the creates ended before the probes could measure anything"
    assert _p99(health_ms) < P99_BOUND_MS, sorted(health_ms)[-10:]
    assert _p99(callback_ms) < P99_BOUND_MS, sorted(callback_ms)[-10:]
    assert set(statuses) <= {200, 202}
    assert statuses.count(202) == CREATES  # the account stayed full: nobody got a slot
    # Only each process's budget (SUBMIT_WAITING_MAX, 1) waited for a slot; the rest were answered at once.
    assert sum(seconds > SUBMIT_WAIT_S / 2 for seconds in create_s) <= WEB_WORKERS
    assert all(_task(http, e)["task_status"] == "queued" for e in ids)  # every one accepted, none sent
    counted = _sync_creates(http)
    assert counted["waited"] + counted["queued_at_once"] == CREATES + len(holders)
    assert counted["waited"] <= WEB_WORKERS + len(holders)

    # Kling now finishes tasks at once: the holders' final callbacks free the slots, and the workers send
    # every accepted task, each exactly once.
    simulator.state.set_default(QUICK_FAILURE)
    workers = Workers(served.env)
    try:
        workers.start()
        for holder in holders:
            final = {"task_id": _task(http, holder)["task_id"], "task_status": "failed"}
            answer = httpx.post(callback_url_for(served.settings, holder), json=final, timeout=10)
            assert answer.status_code == 200
        wait_for(
            lambda: all(_task(http, e)["task_status"] == "failed" for e in ids),
            timeout=120,
            interval=0.2,
            what="every accepted task to be sent and finished",
        )
    finally:
        workers.stop()
        http.close()
    sent = sorted(t["external_task_id"] for t in simulator.state.tasks())
    assert sent == sorted(holders + ids)


@pytest.mark.parametrize(
    ("budgets", "said"),
    [
        ({"WEB_THREADS": "3", "SUBMIT_WAITING_MAX": "2"}, "must be less than WEB_THREADS (3), got 2 + 1"),
        ({"WEB_THREADS": "3", "EVENTS_WAITING_MAX": "2"}, "must be less than WEB_THREADS (3), got 1 + 2"),
        ({"WEB_THREADS": "2"}, "must be less than WEB_THREADS (2), got 1 + 1"),  # the budgets' defaults
    ],
)
def test_waiting_budgets_that_leave_no_thread_spare_refuse_to_start(
    env: dict[str, str], tmp_path: Path, budgets: dict[str, str], said: str
) -> None:
    """Synchronous creates and event long-polls or streams together must leave a thread free."""
    status, errors = refused_web_start({**env, **budgets}, tmp_path)
    assert status != 0
    assert f"SUBMIT_WAITING_MAX + EVENTS_WAITING_MAX: {said}" in errors


def _create(
    http: httpx.Client, external_id: str, start: threading.Barrier | None = None
) -> tuple[int, float]:
    """A synchronous create (no Prefer header): its HTTP status and how long it took, in seconds."""
    if start is not None:
        start.wait(timeout=30)
    began = time.perf_counter()
    answer = http.post("/v1/videos/image2video", json={**IMAGE, "external_task_id": external_id})
    return answer.status_code, time.perf_counter() - began


def _task(http: httpx.Client, external_id: str) -> dict[str, str]:
    answer = http.get(f"/v1/videos/image2video/{external_id}")
    assert answer.status_code == 200, answer.text
    data: dict[str, str] = answer.json()["data"]
    return data


def _timed_ms(call: Callable[[], httpx.Response]) -> float:
    began = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - began) * 1000
    assert answer.status_code == 200, answer.text
    return elapsed


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _sync_creates(http: httpx.Client) -> dict[str, float]:
    """kws_sync_creates_total by outcome, added up over gunicorn's worker processes by /metrics."""
    sample = re.compile(r'^kws_sync_creates_total\{outcome="(\w+)"\} (\S+)$', re.MULTILINE)
    totals = {"waited": 0.0, "queued_at_once": 0.0}
    for outcome, value in sample.findall(http.get("/metrics").text):
        totals[outcome] += float(value)
    return totals


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
