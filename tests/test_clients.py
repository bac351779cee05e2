"""Managed clients (`flask clients`): created, rotated and revoked while the service runs, through the CLI
and the HTTP API against the real Redis. A key is shown once and stored only as a hash, works on every
route of its tenant's and no other tenant's, a rotated-out key stops after its grace by itself, a revoked
client stops at once (its dashboard sessions too), and the first client closes an open API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
import redis
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from tests.support import free_port, wait_for
from tests.test_dashboard import login
from webhook_service.config import Settings
from webhook_service.domain.clients import hash_key
from webhook_service.keys import Keys
from webhook_service.web.app import create_app
from webhook_service.web.auth import announce_if_open

ROOT = Path(__file__).resolve().parent.parent
IMAGE = {"image": "https://example.com/a.jpg", "prompt": "a heron lifts off the water"}
ASYNC = {"Prefer": "respond-async"}
ENV_KEY = "environment-key-0123456789abcdef"


@pytest.fixture
def app(env: dict[str, str]) -> Flask:
    """The service with no client credentials in its environment: open until a client is created."""
    return create_app(env)


@pytest.fixture
def api(app: Flask) -> FlaskClient:
    return app.test_client()


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=list(args))


def issued(result: Result) -> dict[str, str]:
    """The secrets a create or rotate printed: `key`, and with --jwt `access key` and `secret key`."""
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def create_client(app: Flask, name: str, *options: str) -> dict[str, str]:
    return issued(run(app, "clients", "create", name, *options))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def status(api: FlaskClient, token: str | None, path: str = "/v1/videos/image2video") -> tuple[int, int]:
    response = api.get(path, headers=bearer(token) if token is not None else {})
    return response.status_code, response.json["code"]


def create_task(api: FlaskClient, token: str, external_id: str) -> None:
    response = api.post(
        "/v1/videos/image2video",
        json={**IMAGE, "external_task_id": external_id},
        headers={**bearer(token), **ASYNC},
    )
    assert response.status_code == 202, response.text


def listed(api: FlaskClient, token: str) -> list[str]:
    response = api.get("/v1/videos/image2video", headers=bearer(token))
    assert response.status_code == 200, response.text
    return [task["task_info"]["external_task_id"] for task in response.json["data"]]


def client_jwt(access_key: str, secret_key: str, exp_in: float = 1800) -> str:
    now = time.time()
    claims = {"iss": access_key, "exp": int(now + exp_in), "nbf": int(now - 5)}
    return jwt.encode(claims, secret_key, algorithm="HS256", headers={"typ": "JWT"})


def everything_in(redis_url: str) -> bytes:
    """Every key name and every string value in the test's Redis, to search for a secret."""
    connection = redis.Redis.from_url(redis_url)
    found = []
    for name in connection.scan_iter(count=1000):
        found.append(name)
        if connection.type(name) == b"string":
            found.append(connection.get(name) or b"")
        elif connection.type(name) == b"set":
            found.extend(connection.smembers(name))
        elif connection.type(name) == b"hash":
            found.extend(b"%s=%s" % pair for pair in connection.hgetall(name).items())
    return b"\n".join(found)


def test_a_created_key_works_sees_only_its_tenant_and_is_stored_only_as_a_hash(
    app: Flask, api: FlaskClient, redis_url: str
) -> None:
    key_a = create_client(app, "team-a")["key"]
    key_b = create_client(app, "team-b")["key"]
    assert len(key_a) == 43 and key_a != key_b  # secrets.token_urlsafe(32): 256 bits

    create_task(api, key_a, "job-1")
    assert api.get("/v1/tasks/job-1", headers=bearer(key_a)).json["data"]["external_task_id"] == "job-1"
    assert api.get("/v1/tasks/job-1", headers=bearer(key_b)).status_code == 404
    assert api.get("/v1/videos/image2video/job-1", headers=bearer(key_b)).status_code == 404
    assert listed(api, key_a) == ["job-1"] and listed(api, key_b) == []
    create_task(api, key_b, "job-1")  # the same id, the other tenant's own task
    assert listed(api, key_b) == ["job-1"]
    assert api.get("/v1/tasks/job-1", headers=bearer(key_b)).json["data"]["tenant"] == "team-b"

    stored = everything_in(redis_url)
    assert key_a.encode() not in stored and key_b.encode() not in stored
    assert Keys().client_key(hash_key(key_a)).encode() in stored  # looked up by its SHA-256
    shown = run(app, "clients", "list")
    assert shown.exit_code == 0 and "team-a" in shown.stdout and key_a not in shown.output


def test_an_admin_client_sees_every_tenants_tasks(app: Flask, api: FlaskClient) -> None:
    key_a = create_client(app, "team-a")["key"]
    admin = create_client(app, "ops", "--admin")["key"]
    create_task(api, key_a, "job-1")
    assert listed(api, admin) == ["job-1"]
    found = api.get("/v1/tasks/team-a~job-1", headers=bearer(admin))  # another tenant's, by upstream id
    assert found.status_code == 200 and found.json["data"]["tenant"] == "team-a"
    row = next(r for r in _list_json(app) if r["name"] == "ops")
    assert row["admin"] is True and row["source"] == "managed"


def test_an_open_api_closes_when_the_first_client_is_created(app: Flask, api: FlaskClient) -> None:
    assert status(api, None) == (200, 0)
    assert api.get("/").status_code == 200  # the dashboard is open too
    assert api.get("/openapi.json").json["security"] == []

    key = create_client(app, "team-a")["key"]  # the same app, no restart
    assert status(api, None) == (401, 1001)
    assert status(api, "a-guess-0123456789abcdef0123456789abcdef") == (401, 1002)
    assert status(api, key) == (200, 0)
    assert api.get("/").headers["Location"].startswith("/login")
    assert api.get("/openapi.json").json["security"] == [{"bearer": []}]


def test_the_start_knows_a_managed_client_closes_the_api(
    app: Flask, env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """No OPEN warning once a client exists, and gunicorn binds every interface as for keys in the
    environment (an API that needs credentials is meant to be reached)."""
    create_client(app, "team-a")
    with caplog.at_level("WARNING"):
        announce_if_open(Settings.from_env(env))
    assert not any("API is OPEN" in record.message for record in caplog.records)
    settings = {k: v for k, v in os.environ.items() if k not in ("HOST", "SERVICE_API_KEYS")}
    printed = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--print-config", "wsgi:app"],
        cwd=ROOT,
        env={**settings, **env, "PORT": "8123"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = [line for line in printed.stdout.splitlines() if line.startswith("bind ")]
    assert line.split("=", 1)[1].strip() == repr(["0.0.0.0:8123"])


def test_the_environments_credentials_need_no_redis_and_a_managed_one_waits_for_it(
    env: dict[str, str],
) -> None:
    """Checked first, with no round trip: they work through a Redis outage (here on /metrics, which
    answers without Redis). A token shaped like a managed key or AK gets the outage's 503, which its
    client retries, rather than a 401 that says its key is wrong; any other token is refused as ever."""
    access_key, secret_key = "env-access-key", "env-secret-key-0123456789abcdef-0123"
    down = create_app(
        {
            **env,
            "SERVICE_API_KEYS": ENV_KEY,
            "SERVICE_ACCESS_KEY": access_key,
            "SERVICE_SECRET_KEY": secret_key,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }
    ).test_client()
    assert down.get("/metrics", headers=bearer(ENV_KEY)).status_code == 200
    assert down.get("/metrics", headers=bearer(client_jwt(access_key, secret_key))).status_code == 200
    assert down.get("/metrics", headers=bearer("k" * 43)).status_code == 503
    assert down.get("/metrics", headers=bearer(client_jwt("a" * 32, secret_key))).status_code == 503
    assert down.get("/metrics", headers=bearer("not-a-key")).status_code == 401
    assert down.get("/metrics", headers=bearer(client_jwt("someone", secret_key))).status_code == 401


def test_a_rotated_key_works_until_its_grace_ends_then_stops_by_itself(
    app: Flask, api: FlaskClient, redis_url: str
) -> None:
    old = create_client(app, "team-a")["key"]
    rotated = run(app, "clients", "rotate", "team-a", "--grace", "1s")
    new = issued(rotated)["key"]
    assert new != old and "previous keys work until" in rotated.stderr
    assert status(api, old) == (200, 0) and status(api, new) == (200, 0)
    (row,) = _list_json(app)
    assert row["keys"] == 2 and len(row["keys_retiring_at"]) == 1

    wait_for(lambda: status(api, old) == (401, 1002), timeout=10, what="the old key's grace to end")
    assert status(api, new) == (200, 0)
    (row,) = _list_json(app)
    assert row["keys"] == 1 and row["keys_retiring_at"] == []
    assert redis.Redis.from_url(redis_url).ttl(Keys().client_key(hash_key(new))) == -1  # no end of its own


def test_the_default_grace_is_a_day_and_a_rotation_caps_every_old_key_at_its_grace(
    app: Flask, api: FlaskClient, redis_url: str
) -> None:
    connection = redis.Redis.from_url(redis_url)
    first = create_client(app, "team-a")["key"]
    second = issued(run(app, "clients", "rotate", "team-a"))["key"]
    assert 24 * 3600 - 60 < connection.ttl(Keys().client_key(hash_key(first))) <= 24 * 3600
    third = issued(run(app, "clients", "rotate", "team-a", "--grace", "2h"))["key"]
    assert 2 * 3600 - 60 < connection.ttl(Keys().client_key(hash_key(first))) <= 2 * 3600
    assert 2 * 3600 - 60 < connection.ttl(Keys().client_key(hash_key(second))) <= 2 * 3600
    assert [status(api, key) for key in (first, second, third)] == [(200, 0)] * 3

    fourth = issued(run(app, "clients", "rotate", "team-a", "--grace", "0s"))["key"]  # a leaked key
    assert [status(api, key) for key in (first, second, third)] == [(401, 1002)] * 3
    assert status(api, fourth) == (200, 0)
    (row,) = _list_json(app)
    assert row["keys"] == 1


def test_revoke_stops_every_credential_at_once_and_signs_its_dashboard_sessions_out(
    app: Flask, api: FlaskClient, redis_url: str
) -> None:
    revoked = create_client(app, "team-a", "--jwt", "--weight", "3")
    rotated = issued(run(app, "clients", "rotate", "team-a", "--jwt"))  # old and new pairs both valid
    kept = create_client(app, "team-b")["key"]
    tokens = [
        revoked["key"],
        rotated["key"],
        client_jwt(revoked["access key"], revoked["secret key"]),
        client_jwt(rotated["access key"], rotated["secret key"]),
    ]
    assert [status(api, token) for token in tokens] == [(200, 0)] * 4
    browser = app.test_client()
    login(browser, rotated["key"])
    assert browser.get("/").status_code == 200

    result = run(app, "clients", "revoke", "team-a")
    assert result.exit_code == 0, result.output
    assert [status(api, token) for token in tokens] == [(401, 1002)] * 4
    assert browser.get("/").headers["Location"].startswith("/login")
    assert status(api, kept) == (200, 0)
    assert [row["name"] for row in _list_json(app)] == ["team-b"]
    left = everything_in(redis_url)
    assert b"team-a" not in left  # no record, lookup entry, set or weight of it left behind
    assert run(app, "clients", "revoke", "team-a").exit_code == 1


def test_revoking_the_last_client_of_a_service_without_keys_in_its_environment_asks_first(
    app: Flask, api: FlaskClient, env: dict[str, str]
) -> None:
    key = create_client(app, "team-a")["key"]
    refused = run(app, "clients", "revoke", "team-a")
    assert refused.exit_code == 2 and "would open the API to anyone" in refused.stderr
    assert status(api, key) == (200, 0) and status(api, None) == (401, 1001)
    assert run(app, "clients", "revoke", "team-a", "--leave-open").exit_code == 0
    assert status(api, None) == (200, 0)

    closed = create_app({**env, "SERVICE_API_KEYS": ENV_KEY})  # the environment keeps it closed
    create_client(closed, "team-b")
    assert run(closed, "clients", "revoke", "team-b").exit_code == 0
    assert status(closed.test_client(), None) == (401, 1001)


def test_a_jwt_signed_with_the_printed_pair_works_for_its_tenant_only(
    app: Flask, api: FlaskClient, env: dict[str, str], redis_url: str
) -> None:
    pair = create_client(app, "team-a", "--jwt")
    key_b = create_client(app, "team-b")["key"]
    assert len(pair["secret key"]) >= 32 and pair["access key"] != pair["secret key"]
    token = client_jwt(pair["access key"], pair["secret key"])
    create_task(api, token, "by-jwt")
    assert api.get("/v1/tasks/by-jwt", headers=bearer(pair["key"])).json["data"]["tenant"] == "team-a"
    assert api.get("/v1/tasks/by-jwt", headers=bearer(key_b)).status_code == 404

    wrong = client_jwt(pair["access key"], "a-wrong-secret-key-0123456789abcdef")
    assert status(api, wrong) == (401, 1002)
    assert status(api, client_jwt(pair["access key"], pair["secret key"], exp_in=-60)) == (401, 1004)
    too_long = client_jwt(pair["access key"], pair["secret key"], exp_in=2 * 3600)
    assert status(api, too_long) == (401, 1002)
    browser = app.test_client()
    login(browser, token)  # the dashboard takes it too
    assert browser.get("/").status_code == 200

    stored = everything_in(redis_url)
    assert pair["secret key"].encode() not in stored and pair["access key"].encode() in stored
    # Encrypted under SECRET_KEY: a Redis copy without it (here, a service with another) cannot use it.
    other = create_app({**env, "SECRET_KEY": "another-secret-key-0123456789abcdef"}).test_client()
    assert status(other, token) == (401, 1002)
    assert status(other, pair["key"]) == (200, 0)


def test_rotate_jwt_gives_a_new_pair_and_the_old_one_works_for_the_grace(
    app: Flask, api: FlaskClient
) -> None:
    old = create_client(app, "team-a", "--jwt")
    new = issued(run(app, "clients", "rotate", "team-a", "--jwt", "--grace", "1s"))
    assert new["access key"] != old["access key"] and new["secret key"] != old["secret key"]
    old_token = client_jwt(old["access key"], old["secret key"])
    assert status(api, old_token) == (200, 0)
    assert status(api, client_jwt(new["access key"], new["secret key"])) == (200, 0)
    (row,) = _list_json(app)
    assert row["access_keys"] == 2 and len(row["access_keys_retiring_at"]) == 1
    wait_for(lambda: status(api, old_token) == (401, 1002), timeout=10, what="the old pair's grace to end")
    assert status(api, client_jwt(new["access key"], new["secret key"])) == (200, 0)

    plain = issued(run(app, "clients", "rotate", "team-a", "--grace", "0s"))  # the key only
    assert "access key" not in plain
    assert status(api, client_jwt(new["access key"], new["secret key"])) == (200, 0)


def test_weights_and_max_open_are_written_for_managed_and_environment_tenants(
    env: dict[str, str], redis_url: str
) -> None:
    app = create_app({**env, "SERVICE_API_KEYS": f"team-env:{ENV_KEY}"})
    connection = redis.Redis.from_url(redis_url)
    weights, max_open = Keys().tenant_weights, Keys().tenant_max_open
    create_client(app, "team-a", "--weight", "3", "--max-open", "2")
    assert connection.hget(weights, "team-a") == b"3" and connection.hget(max_open, "team-a") == b"2"

    assert run(app, "clients", "update", "team-a", "--max-open", "none").exit_code == 0
    assert connection.hget(max_open, "team-a") is None and connection.hget(weights, "team-a") == b"3"
    assert run(app, "clients", "update", "team-env", "--weight", "5", "--max-open", "4").exit_code == 0
    assert connection.hget(weights, "team-env") == b"5" and connection.hget(max_open, "team-env") == b"4"

    rows = {row["name"]: row for row in _list_json(app)}
    assert rows["team-a"]["weight"] == 3 and rows["team-a"]["max_open"] is None
    assert rows["team-env"] == {
        "name": "team-env",
        "source": "environment",
        "admin": False,
        "weight": 5,
        "max_open": 4,
        "created_at": None,
        "keys": 1,
        "keys_retiring_at": [],
        "access_keys": 0,
        "access_keys_retiring_at": [],
    }
    table = run(app, "clients", "list").stdout
    assert "team-env  environment" in table and ENV_KEY not in table

    assert run(app, "clients", "revoke", "team-a").exit_code == 0
    assert connection.hget(weights, "team-a") is None  # a tenant left without credentials: forgotten


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (("create", "Team A"), 2, "'Team A' is not a valid client name: a name is 1 to 32 characters"),
        (("create", "a" * 33), 2, "is not a valid client name"),
        (("create", "team~x"), 2, "is not a valid client name"),
        (("create", "team-a", "--weight", "0"), 2, "0 is not in the range x>=1"),
        (("create", "team-a", "--weight", "lots"), 2, "'lots' is not a valid integer"),
        (("create", "team-a", "--max-open", "0"), 2, "expected a whole number of at least 1, or none"),
        (("create", "team-a", "--max-open", "-1"), 2, "expected a whole number of at least 1, or none"),
        (("update", "team-a"), 2, "give --weight, --max-open or both"),
        (("update", "nobody", "--weight", "2"), 1, "no client or environment key has tenant 'nobody'"),
        (("update", "team-a", "--max-open", "2.5"), 2, "expected a whole number of at least 1, or none"),
        (("rotate", "team-a", "--grace", "a while"), 2, "expected a duration like 0s, 30m, 24h, 7d"),
        (("rotate", "team-a", "--grace", "31d"), 2, "the grace period must be between 0s and 30d"),
        (("rotate", "nobody"), 1, "no client 'nobody'"),
        (("revoke", "nobody"), 1, "no client 'nobody'"),
    ],
)
def test_bad_names_and_numbers_are_refused_with_a_clear_message(
    app: Flask, redis_url: str, args: tuple[str, ...], exit_code: int, message: str
) -> None:
    create_client(app, "existing")
    before = everything_in(redis_url)
    result = run(app, "clients", *args)
    assert result.exit_code == exit_code, result.output
    assert message in " ".join(result.stderr.split())
    assert everything_in(redis_url) == before  # nothing written


def test_a_name_taken_is_refused_and_its_key_kept(app: Flask, api: FlaskClient) -> None:
    key = create_client(app, "team-a")["key"]
    again = run(app, "clients", "create", "team-a")
    assert again.exit_code == 2 and "client 'team-a' exists already" in again.stderr
    assert "key:" not in again.stdout and status(api, key) == (200, 0)


def _list_json(app: Flask) -> list[dict[str, object]]:
    result = run(app, "clients", "list", "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows
