"""TEST_REDIS_URL points the suite at a Redis of someone's choosing, whose database the tests empty
around every test: a database holding anything is refused before a test runs, and its keys survive,
unless TEST_REDIS_FLUSH=yes says it is the tests' own. Each case runs the suite's fixtures in a pytest
of its own, on a tiny test, against a redis-server this test starts with one key in it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import PrivateRedis

ROOT = Path(__file__).resolve().parent.parent
TINY_TEST = "def test_that_uses_the_database(redis_url):\n    pass\n"


@pytest.fixture
def someones_redis() -> Iterator[redis.Redis]:
    server = PrivateRedis("--appendonly", "no").start()
    client = redis.Redis.from_url(server.url)
    client.set("someone:precious", "kept")
    yield client
    server.stop()


def run_suite_against(database: redis.Redis, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on the tiny test with the suite's fixtures (tests/conftest.py, as a plugin), from a
    directory of its own so no setting of the checkout's applies."""
    (tmp_path / "test_tiny.py").write_text(TINY_TEST)
    kwargs = database.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}/0"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TEST_REDIS")}
    environment.update(PYTHONPATH=str(ROOT), TEST_REDIS_URL=url, **env)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    return subprocess.run(
        [*command, "test_tiny.py"], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )


def test_a_test_redis_url_whose_database_holds_keys_is_refused_and_its_keys_kept(
    someones_redis: redis.Redis, tmp_path: Path
) -> None:
    run = run_suite_against(someones_redis, tmp_path)

    assert run.returncode == 2, run.stdout + run.stderr
    said = run.stdout + run.stderr
    assert "TEST_REDIS_URL's database holds 1 key, and the tests empty it around every test" in said
    assert "set TEST_REDIS_FLUSH=yes if it is the tests' own" in said
    assert "passed" not in said
    assert someones_redis.get("someone:precious") == b"kept"


def test_test_redis_flush_yes_lets_the_tests_use_and_empty_it(
    someones_redis: redis.Redis, tmp_path: Path
) -> None:
    run = run_suite_against(someones_redis, tmp_path, TEST_REDIS_FLUSH="yes")

    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout + run.stderr
    assert someones_redis.dbsize() == 0
