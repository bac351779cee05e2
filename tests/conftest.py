"""Fixtures: a real Redis (its own database, emptied around each test), the Kling simulator and the
service itself served on loopback, so callbacks travel over real HTTP both ways."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from moto.server import ThreadedMotoServer

from kling_simulator import SimulatorServer
from tests.support import LiveServer, PrivateRedis, die_with_parent
from webhook_service.services import Services
from webhook_service.web.app import create_app
from webhook_service.web.context import services_of

# Every process a test starts (workers, gunicorn, the CLI) inherits this: none of them reads the
# checkout's `.env` or the dev file of a `./scripts/up` running beside the tests (its webhook receiver,
# its simulator), only what the test gives it.
os.environ["READ_SETTINGS_FILES"] = "false"

SIM_TOKEN = "sim-token-for-tests"
SECRET_KEY = "test-secret-key-0123456789abcdef"
S3_SECRET = "fake-secret-key-for-tests"


@pytest.fixture(scope="session")
def test_redis() -> Iterator[str]:
    """A redis-server of the run's own, on a free loopback port, so that the tests (which empty their
    database around every test) never touch anyone's data. TEST_REDIS_URL names another one instead:
    its database is emptied just the same, so the run refuses one that holds anything unless
    TEST_REDIS_FLUSH=yes says it is the tests' own (a run cut short leaves its keys behind)."""
    if url := os.environ.get("TEST_REDIS_URL"):
        keys = redis.Redis.from_url(url).dbsize()
        if keys and os.environ.get("TEST_REDIS_FLUSH") != "yes":
            pytest.exit(
                f"TEST_REDIS_URL's database holds {keys} key{'s' if keys != 1 else ''}, and the tests "
                "empty it around every test. Point TEST_REDIS_URL at an empty database, or set "
                "TEST_REDIS_FLUSH=yes if it is the tests' own.",
                returncode=2,
            )
        yield url
        return
    server = PrivateRedis("--appendonly", "no", dies_with_run=True).start()  # nothing to keep: no AOF
    yield server.url
    server.stop()


@pytest.fixture
def redis_url(test_redis: str) -> Iterator[str]:
    connection = redis.Redis.from_url(test_redis)
    connection.flushdb()
    yield test_redis
    connection.flushdb()


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(token=SIM_TOKEN) as sim:
        yield sim


@pytest.fixture
def env(redis_url: str, simulator: SimulatorServer, tmp_path: Path) -> dict[str, str]:
    """The service's configuration for a test; tests add or change variables before `app` is built."""
    return {
        "REDIS_URL": redis_url,
        "SECRET_KEY": SECRET_KEY,
        "KLING_API_BASE": simulator.url,
        "KLING_API_TOKEN": SIM_TOKEN,
        "PUBLIC_BASE_URL": "http://127.0.0.1:9",  # replaced by the live server's URL in `service`
        "ARCHIVE_URL": str(tmp_path / "archive"),
        "DOWNLOAD_ALLOWED_HOSTS": "127.0.0.1",  # the simulator's file server is on loopback
        "ARCHIVE_RETRY_BASE_S": "1",
    }


@pytest.fixture
def app(env: dict[str, str]) -> Flask:
    return create_app(env)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass
class Service:
    """The service running on loopback, reachable by the simulator's callbacks."""

    url: str
    app: Flask
    http: httpx.Client

    @property
    def services(self) -> Services:
        return services_of(self.app)

    def submit(self, body: dict[str, Any], prefix: str = "") -> httpx.Response:
        return self.http.post(f"{prefix}/v1/videos/image2video", json=body)

    def task(self, any_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/videos/image2video/{any_id}")
        assert response.status_code == 200, response.text
        return response.json()["data"]


@pytest.fixture
def service(env: dict[str, str]) -> Iterator[Service]:
    server = LiveServer()
    app = create_app({**env, "PUBLIC_BASE_URL": server.url})
    server.start(app)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        yield Service(server.url, app, http)
    server.stop()


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh bucket (moto's state is shared by the whole server), with fake credentials only."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    name = f"archive-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_url).create_bucket(Bucket=name)
    return name


class Workers:
    """`python -m workers`, as the Procfile runs it, in its own process group so a test can kill it whole.

    A worker also dies with the test process (Linux parent-death signal), so a test run cut short
    leaves no worker behind to take the next run's jobs. The signal comes when the starting *thread*
    ends: start workers from the test's own thread.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers"],
            env=self.env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture
def services_with(env: dict[str, str]) -> Iterator[Callable[..., Service]]:
    """The service on loopback with extra settings (several may run in one test), stopped after it."""
    started = []

    def start(**overrides: str) -> Service:
        service, server, _ = make_service(env, **overrides)
        started.append((service, server))
        return service

    yield start
    for service, server in started:
        service.http.close()
        server.stop()


def make_service(env: dict[str, str], **overrides: str) -> tuple[Service, LiveServer, dict[str, str]]:
    server = LiveServer()
    service_env = {**env, "PUBLIC_BASE_URL": server.url, **overrides}
    app = create_app(service_env)
    server.start(app)
    return Service(server.url, app, httpx.Client(base_url=server.url, timeout=10)), server, service_env
