"""Fixtures: a real Redis (its own database, emptied around each test), the Kling simulator and the
service itself served on loopback, so callbacks travel over real HTTP both ways."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from kling_simulator import SimulatorServer
from tests.support import LiveServer
from webhook_service import create_app
from webhook_service.lifecycle import Services

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SIM_TOKEN = "sim-token-for-tests"
SECRET_KEY = "test-secret-key-0123456789abcdef"


@pytest.fixture
def redis_url() -> Iterator[str]:
    connection = redis.Redis.from_url(TEST_REDIS_URL)
    connection.flushdb()
    yield TEST_REDIS_URL
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
        return self.app.extensions["webhook_service"]

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
