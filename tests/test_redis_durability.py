"""What Redis promises to keep, checked where an operator would see it: the web and the worker refuse
an evicting Redis at start, warn about one that keeps nothing (or refuse it with REQUIRE_DURABLE_REDIS),
start on one that will not say, and /readyz and the dashboard report it. Each test runs a redis-server
of its own with the configuration under test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support import PrivateRedis, free_port, wait_for
from tests.test_gunicorn import ROOT, start_gunicorn
from webhook_service.web.app import create_app

NO_PERSISTENCE = ("--appendonly", "no", "--save", "")
CONFIG_DISABLED = ("--rename-command", "CONFIG", "")
StartRedis = Callable[..., PrivateRedis]


@pytest.fixture
def start_redis() -> Iterator[StartRedis]:
    started: list[PrivateRedis] = []

    def start(*config: str) -> PrivateRedis:
        server = PrivateRedis(*config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m workers --burst`: it stops once the queues are empty, so a start that is not refused
    ends too, with 0."""
    return subprocess.run(
        [sys.executable, "-m", "workers", "--burst"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def refused_web_start(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """gunicorn's exit status and what it printed, when it is expected to refuse to start."""
    process = start_gunicorn({**env, "WEB_CONCURRENCY": "1"}, free_port(), tmp_path / "metrics")
    try:
        _, errors = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.communicate(timeout=30)
        raise AssertionError("gunicorn started when it should have refused to") from None
    return process.returncode, errors


def warnings_in(log: str) -> list[str]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line["message"] for line in lines if line["level"] == "WARNING"]


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_an_evicting_redis_stops_the_worker(
    env: dict[str, str], start_redis: StartRedis, policy: str
) -> None:
    server = start_redis("--maxmemory-policy", policy)
    finished = run_worker({**env, "REDIS_URL": server.url})
    assert finished.returncode != 0
    assert f"maxmemory-policy is {policy}" in finished.stderr
    assert "Set `maxmemory-policy noeviction`" in finished.stderr


def test_an_evicting_redis_stops_the_web(
    env: dict[str, str], start_redis: StartRedis, tmp_path: Path
) -> None:
    server = start_redis("--maxmemory-policy", "allkeys-lfu")
    status, errors = refused_web_start({**env, "REDIS_URL": server.url}, tmp_path)
    assert status != 0
    assert "maxmemory-policy is allkeys-lfu" in errors and "Set `maxmemory-policy noeviction`" in errors


def test_a_redis_that_keeps_nothing_is_a_warning_and_readyz_says_not_durable(
    env: dict[str, str], start_redis: StartRedis, tmp_path: Path
) -> None:
    server = start_redis(*NO_PERSISTENCE)
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = start_gunicorn(
            {**env, "REDIS_URL": server.url, "WEB_CONCURRENCY": "2"}, port, tmp_path / "metrics", stderr=log
        )
    try:
        ready = wait_for(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), timeout=30, what="readiness")
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    assert ready == {
        "status": "ok",
        "redis": "ok",
        "durable": False,
        "persistence": "none",
        "maxmemory_policy": "noeviction",
    }
    said = [m for m in warnings_in(log_path.read_text()) if "keeps nothing on disk" in m]
    assert len(said) == 1  # by gunicorn's master, not once per worker
    assert "REQUIRE_DURABLE_REDIS=true" in said[0]

    worker = run_worker({**env, "REDIS_URL": server.url})
    assert worker.returncode == 0
    assert any("keeps nothing on disk" in m for m in warnings_in(worker.stderr))


@pytest.mark.parametrize(
    ("config", "persistence"),
    [((), "aof (appendfsync always)"), (("--appendonly", "no", "--save", "60 1"), "rdb (save 60 1)")],
    ids=["aof", "rdb"],
)
def test_a_persistent_redis_is_durable_in_readyz(
    env: dict[str, str], start_redis: StartRedis, config: tuple[str, ...], persistence: str
) -> None:
    server = start_redis(*config)  # PrivateRedis's defaults turn AOF on
    answer = create_app({**env, "REDIS_URL": server.url}).test_client().get("/readyz")
    assert answer.status_code == 200
    assert answer.json == {
        "status": "ok",
        "redis": "ok",
        "durable": True,
        "persistence": persistence,
        "maxmemory_policy": "noeviction",
    }


def test_require_durable_redis_refuses_a_redis_that_keeps_nothing(
    env: dict[str, str], start_redis: StartRedis, tmp_path: Path
) -> None:
    server = start_redis(*NO_PERSISTENCE)
    strict = {**env, "REDIS_URL": server.url, "REQUIRE_DURABLE_REDIS": "true"}
    worker = run_worker(strict)
    assert worker.returncode != 0
    assert "keeps nothing on disk" in worker.stderr and "REQUIRE_DURABLE_REDIS is true" in worker.stderr
    status, errors = refused_web_start(strict, tmp_path)
    assert status != 0
    assert "REQUIRE_DURABLE_REDIS is true" in errors and "appendonly yes" in errors


def test_a_redis_that_refuses_config_is_unknown_and_both_start(
    env: dict[str, str], start_redis: StartRedis, tmp_path: Path
) -> None:
    """Managed Redis often disables CONFIG: that is no reason to refuse, even with REQUIRE_DURABLE_REDIS."""
    server = start_redis(*NO_PERSISTENCE, *CONFIG_DISABLED)
    strict = {**env, "REDIS_URL": server.url, "REQUIRE_DURABLE_REDIS": "true", "WEB_CONCURRENCY": "1"}
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = start_gunicorn(strict, port, tmp_path / "metrics", stderr=log)
    try:
        ready = wait_for(lambda: _ready(f"http://127.0.0.1:{port}/readyz"), timeout=30, what="readiness")
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    assert ready["durable"] is None
    assert ready["persistence"] == "unknown" and ready["maxmemory_policy"] is None
    assert any("Redis refused CONFIG" in m for m in warnings_in(log_path.read_text()))

    worker = run_worker(strict)
    assert worker.returncode == 0
    assert any("Redis refused CONFIG" in m for m in warnings_in(worker.stderr))


@pytest.mark.parametrize(
    ("config", "banners"),
    [
        (NO_PERSISTENCE, {"redis-not-durable"}),
        (("--maxmemory-policy", "allkeys-lru"), {"redis-evicting"}),
        ((), set()),
        (CONFIG_DISABLED, set()),
    ],
    ids=["keeps nothing", "evicting", "aof", "config disabled"],
)
def test_the_dashboard_shows_a_banner_when_redis_may_lose_data(
    env: dict[str, str], start_redis: StartRedis, config: tuple[str, ...], banners: set[str]
) -> None:
    server = start_redis(*config)
    page = create_app({**env, "REDIS_URL": server.url}).test_client().get("/")
    assert page.status_code == 200
    assert {b for b in ("redis-not-durable", "redis-evicting") if f'id="{b}"' in page.text} == banners
    if "redis-not-durable" in banners:
        assert "Redis keeps nothing on disk" in page.text


def _ready(url: str) -> dict[str, object] | None:
    try:
        answer = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def test_readyz_is_unfit_on_a_redis_the_start_would_have_refused(
    env: dict[str, str], start_redis: StartRedis
) -> None:
    """The start-up check is skipped when Redis does not answer yet, and a policy can change under a
    running service (CONFIG SET, a failover to a replica configured otherwise): readiness says so, so a
    balancer takes the host out rather than let it accept what Redis may silently drop."""
    server = start_redis()
    client = create_app({**env, "REDIS_URL": server.url}).test_client()
    assert client.get("/readyz").status_code == 200

    redis.Redis.from_url(server.url).config_set("maxmemory-policy", "allkeys-lru")
    # Each app takes its own reading (then keeps it up to half a minute): a new one reads the change.
    answer = create_app({**env, "REDIS_URL": server.url}).test_client().get("/readyz")
    assert answer.status_code == 503
    unfit = answer.json
    assert unfit["status"] == "unfit" and unfit["maxmemory_policy"] == "allkeys-lru"
    assert "Set `maxmemory-policy noeviction`" in unfit["reason"]

    redis.Redis.from_url(server.url).config_set("maxmemory-policy", "noeviction")
    redis.Redis.from_url(server.url).config_set("appendonly", "no")
    strict = create_app({**env, "REDIS_URL": server.url, "REQUIRE_DURABLE_REDIS": "true"}).test_client()
    refused = strict.get("/readyz")
    assert refused.status_code == 503 and refused.json["status"] == "unfit"
    assert "REQUIRE_DURABLE_REDIS is true" in refused.json["reason"]
    lenient = create_app({**env, "REDIS_URL": server.url}).test_client().get("/readyz")
    assert lenient.status_code == 200 and lenient.json["durable"] is False
