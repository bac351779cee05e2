"""The web process as the Procfile runs it: gunicorn with gunicorn.conf.py, on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.support import die_with_parent, free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


def start_gunicorn(
    env: dict[str, str], port: int, metrics_dir: Path, stderr: IO[str] | int = subprocess.PIPE
) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}"]
    return subprocess.Popen(
        [*command, "wsgi:app"],
        cwd=ROOT,
        env={**os.environ, **env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


Served = tuple[int, dict[str, str], Path]  # port, the service's environment, the test's directory


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    """gunicorn serving the service on a free loopback port."""
    port = free_port()
    env = {**env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    with (tmp_path / "gunicorn.log").open("w") as log:  # a pipe nobody reads would block it when full
        process = start_gunicorn(env, port, tmp_path / "metrics", stderr=log)
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        wait_for(lambda: _answers(url), timeout=30, what="gunicorn to serve")
        yield port, env, tmp_path
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_second_server_on_a_served_port_fails_to_start(served: Served) -> None:
    """Each worker has its own SO_REUSEPORT socket; a second server must not quietly share the port."""
    port, env, tmp_path = served
    second = start_gunicorn(env, port, tmp_path / "metrics-second")
    _, errors = second.communicate(timeout=60)
    assert second.returncode != 0
    assert f"cannot serve 127.0.0.1:{port}" in errors
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200  # the first still serves


def test_callbacks_are_answered_in_front_of_flask_under_gunicorn(served: Served) -> None:
    port, _, _ = served
    base = f"http://127.0.0.1:{port}"
    forged = httpx.post(f"{base}/callbacks/kling?token=forged", json={"task_status": "succeed"})
    assert forged.status_code == 403
    assert forged.json()["code"] == 1002 and forged.headers["X-Request-Id"] == forged.json()["request_id"]
    assert httpx.get(f"{base}/callbacks/kling").status_code == 405
    assert httpx.get(f"{base}/v1/videos/image2video/nothing").status_code in (401, 404)  # Flask's routes


def test_the_start_says_where_it_serves_and_that_the_api_is_open_once(
    env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = start_gunicorn(env, port, tmp_path / "metrics", stderr=log)
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="gunicorn to serve")
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    announcements = [line for line in lines if "API is OPEN" in line["message"]]
    assert [line["level"] for line in announcements] == ["WARNING"]  # by the master, not once per worker
    serving = [line["message"] for line in lines if line["message"].startswith("Serving on")]
    assert serving == [f"Serving on http://127.0.0.1:{port}, each worker on its own SO_REUSEPORT socket"]


@pytest.mark.parametrize(
    ("concurrency", "expected"),
    [(None, min(2 * len(os.sched_getaffinity(0)), 12)), ("3", 3)],
    ids=["two per core", "WEB_CONCURRENCY"],
)
def test_the_number_of_workers(
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    concurrency: str | None,
    expected: int,
) -> None:
    """Two per core unless WEB_CONCURRENCY says otherwise."""
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    if concurrency is not None:
        env = {**env, "WEB_CONCURRENCY": concurrency}
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        process = start_gunicorn(env, port, tmp_path / "metrics", stderr=log)

    def booted() -> int:
        return log_path.read_text().count("Booting worker with pid")

    try:
        wait_for(lambda: booted() >= expected, timeout=60, what=f"{expected} workers to boot")
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=30, what="gunicorn to serve")
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    assert booted() == expected


@pytest.mark.parametrize(
    ("extra", "bound"),
    [
        ({}, "127.0.0.1:8123"),  # an open API stays on this machine
        ({"SERVICE_API_KEYS": "a-client-key-of-24-chars-or-more"}, "0.0.0.0:8123"),
        ({"HOST": "0.0.0.0"}, "0.0.0.0:8123"),  # said outright: a platform's router, a container
        ({"HOST": "::1"}, "[::1]:8123"),  # an IPv6 address in brackets, or gunicorn reads "1:8123"
        ({"HOST": "[::1]"}, "[::1]:8123"),
    ],
)
def test_the_bind_address_is_loopback_while_the_api_is_open(
    env: dict[str, str], extra: dict[str, str], bound: str
) -> None:
    settings = {k: v for k, v in os.environ.items() if k not in ("HOST", "SERVICE_API_KEYS")}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--print-config", "wsgi:app"],
        cwd=ROOT,
        env={**settings, **env, "PORT": "8123", **extra},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("bind ")]
    assert line.split("=", 1)[1].strip() == repr([bound])
