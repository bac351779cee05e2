"""Dashboard sessions end on the server: logout kills every copy of the cookie, and a session lasts at
most its absolute lifetime from sign-in, however active."""

from __future__ import annotations

import pytest
import redis
from flask import Flask

from tests.support import wait_for
from tests.test_dashboard import KEY, csrf_token, login
from webhook_service.keys import Keys
from webhook_service.web.app import create_app
from webhook_service.web.dashboard import session as operator


@pytest.fixture
def locked(env: dict[str, str]) -> Flask:
    return create_app({**env, "SERVICE_API_KEYS": KEY})


def session_keys(redis_url: str) -> list[bytes]:
    return sorted(redis.Redis.from_url(redis_url).keys(Keys().dashboard_session("*")))


def test_a_cookie_copied_before_logout_no_longer_works_after_it(locked: Flask, redis_url: str) -> None:
    browser = locked.test_client()
    login(browser)
    copied = browser.get_cookie("kws_session")
    assert copied is not None
    thief = locked.test_client()
    thief.set_cookie("kws_session", copied.value)
    assert thief.get("/").status_code == 200  # the copy works while the session lives

    out = browser.post("/logout", data={"csrf_token": csrf_token(browser, "/logout")})
    assert out.status_code == 302
    assert thief.get("/").headers["Location"].startswith("/login")
    assert thief.get("/deliveries").headers["Location"].startswith("/login")
    assert session_keys(redis_url) == []


def test_each_sign_in_is_its_own_session(locked: Flask, redis_url: str) -> None:
    first, second = locked.test_client(), locked.test_client()
    login(first)
    login(second)
    assert len(session_keys(redis_url)) == 2
    first.post("/logout", data={"csrf_token": csrf_token(first, "/logout")})
    assert first.get("/").status_code == 302 and second.get("/").status_code == 200


def test_a_session_ends_its_absolute_lifetime_after_sign_in_however_active(
    locked: Flask, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = locked.test_client()
    login(client)
    (key,) = session_keys(redis_url)
    ttl = redis.Redis.from_url(redis_url).ttl(key)
    assert (
        operator.SESSION_ABSOLUTE_LIFETIME_S - 60 < ttl <= operator.SESSION_ABSOLUTE_LIFETIME_S == 12 * 3600
    )

    monkeypatch.setattr(operator, "SESSION_ABSOLUTE_LIFETIME_S", 1)
    client = locked.test_client()
    login(client)
    # Page views renew the cookie's inactivity lifetime, never the absolute one.
    wait_for(lambda: client.get("/").status_code == 302, timeout=5, what="the session to end")
    assert client.get("/").headers["Location"].startswith("/login")


def test_a_cookie_made_before_sessions_lived_in_redis_is_signed_out(locked: Flask) -> None:
    """One signed with SECRET_KEY and the right fingerprint, but with no session id Redis knows."""
    client = locked.test_client()
    login(client)
    with client.session_transaction() as session:
        del session["operator"]["sid"]
    assert client.get("/").headers["Location"].startswith("/login")
