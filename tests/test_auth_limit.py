"""Failed authentications per client address: 429 with Retry-After past the limit, shared through Redis
by every web process, and never in the way when Redis is down."""

from __future__ import annotations

import re

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import make_service
from tests.support import wait_for
from webhook_service.keys import Keys
from webhook_service.web import auth_limit
from webhook_service.web.app import create_app

KEY = "limit-test-key-0123456789abcdef"
LIST = "/v1/videos/image2video"
GUESSER = {"REMOTE_ADDR": "203.0.113.7"}
NEIGHBOUR = {"REMOTE_ADDR": "203.0.113.8"}


@pytest.fixture
def locked(env: dict[str, str]) -> Flask:
    return create_app({**env, "SERVICE_API_KEYS": KEY})


def get(client: FlaskClient, bearer: str, address: dict[str, str] = GUESSER) -> tuple[int, dict[str, object]]:
    response = client.get(LIST, headers={"Authorization": f"Bearer {bearer}"}, environ_base=address)
    return response.status_code, {"retry_after": response.headers.get("Retry-After"), **response.json}


def fail(client: FlaskClient, times: int, address: dict[str, str] = GUESSER) -> None:
    for n in range(times):
        status, body = get(client, f"guess-{n}", address)
        assert (status, body["code"]) == (401, 1002), f"failure {n + 1}"


def test_past_20_failures_a_minute_every_attempt_from_that_address_gets_429(
    locked: Flask, redis_url: str
) -> None:
    client = locked.test_client()
    fail(client, auth_limit.MAX_FAILURES)

    status, body = get(client, "guess-21")
    assert status == 429 and body["code"] == 1302 and body["request_id"]
    assert "too many failed authentications" in str(body["message"])
    assert 1 <= int(str(body["retry_after"])) <= 60
    assert get(client, KEY)[0] == 429  # a right guess now would tell the guesser it was right
    unauthenticated = client.get(LIST, environ_base=GUESSER)
    assert unauthenticated.status_code == 429 and "Retry-After" in unauthenticated.headers

    assert get(client, KEY, NEIGHBOUR)[0] == 200  # another address is not held up
    assert get(client, "neighbour's typo", NEIGHBOUR)[0] == 401
    counter = Keys().auth_failures("203.0.113.7")
    assert 0 < redis.Redis.from_url(redis_url).ttl(counter) <= 60  # it removes itself with its window


def test_the_address_may_try_again_once_the_window_has_passed(
    locked: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_limit, "WINDOW_S", 1)
    client = locked.test_client()
    fail(client, auth_limit.MAX_FAILURES)
    status, body = get(client, KEY)
    assert status == 429 and body["retry_after"] == "1"
    wait_for(lambda: get(client, KEY)[0] == 200, timeout=5, what="the window to pass")
    assert get(client, "guess-again")[0] == 401  # a new window, counted from zero


def test_successful_requests_are_not_counted(locked: Flask) -> None:
    client = locked.test_client()
    for _ in range(3):
        for _ in range(30):
            assert get(client, KEY)[0] == 200
        fail(client, 6)  # 18 failures in all, among 90 successes: still under the limit
    assert get(client, "one more")[0] == 401


def test_ipv6_addresses_are_counted_by_their_64(locked: Flask) -> None:
    client = locked.test_client()
    for n in range(auth_limit.MAX_FAILURES):
        assert get(client, "guess", {"REMOTE_ADDR": f"2001:db8:1:2::{n + 1:x}"})[0] == 401
    assert get(client, "guess", {"REMOTE_ADDR": "2001:db8:1:2:ffff::1"})[0] == 429
    assert get(client, KEY, {"REMOTE_ADDR": "2001:db8:1:3::1"})[0] == 200


def test_every_web_process_shares_the_count(env: dict[str, str]) -> None:
    """Failures over real HTTP to one server and through another app count together (both from
    127.0.0.1), as gunicorn's workers do through the same Redis."""
    served, server, service_env = make_service(env, SERVICE_API_KEYS=KEY)
    try:
        other = create_app(service_env).test_client()
        half = auth_limit.MAX_FAILURES // 2
        for n in range(half):
            assert served.http.get(LIST, headers={"Authorization": f"Bearer g{n}"}).status_code == 401
        fail(other, auth_limit.MAX_FAILURES - half, {"REMOTE_ADDR": "127.0.0.1"})
        refused = served.http.get(LIST, headers={"Authorization": f"Bearer {KEY}"})
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["code"] == 1302
    finally:
        served.http.close()
        server.stop()


def test_a_redis_failure_lets_requests_through_rather_than_locking_everyone_out(
    env: dict[str, str],
) -> None:
    """/metrics answers without Redis, so it shows the limiter alone: it fails open."""
    down = create_app({**env, "SERVICE_API_KEYS": KEY, "REDIS_URL": "redis://127.0.0.1:1/0"}).test_client()
    for n in range(auth_limit.MAX_FAILURES + 5):
        answer = down.get("/metrics", headers={"Authorization": f"Bearer g{n}"})
        assert answer.status_code == 401, answer.text
    assert down.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def csrf_token(client: FlaskClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login", environ_base=GUESSER).text)
    assert match
    return match[1]


def sign_in(client: FlaskClient, credential: str, address: dict[str, str] = GUESSER) -> tuple[int, str, str]:
    data = {"credential": credential, "csrf_token": csrf_token(client)}
    response = client.post("/login", data=data, environ_base=address)
    return response.status_code, response.headers.get("Retry-After", ""), response.text


def test_the_dashboard_login_is_limited_too_and_says_so_in_a_page(locked: Flask) -> None:
    operator = locked.test_client()
    assert sign_in(operator, KEY)[0] == 302  # signed in before the guessing starts
    guesser = locked.test_client()
    for _ in range(auth_limit.MAX_FAILURES // 2):
        assert sign_in(guesser, "wrong")[0] == 401
    fail(guesser, auth_limit.MAX_FAILURES // 2)  # the API's failures and the login's count together

    status, retry_after, page = sign_in(guesser, KEY)
    assert status == 429 and 1 <= int(retry_after) <= 60
    assert "Too many failed sign-ins from this address" in page and "<form" in page
    assert operator.get("/", environ_base=GUESSER).status_code == 200  # a session is no new attempt
    assert sign_in(locked.test_client(), KEY, NEIGHBOUR)[0] == 302
