"""Client credentials: API keys, Kling-style JWTs, and the open mode."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from webhook_service.config import Settings
from webhook_service.web.app import create_app
from webhook_service.web.auth import announce_if_open

AK, SK = "client-ak", "client-sk-0123456789abcdef0123456789"
KEY_ONE, KEY_TWO = "key-one-0123456789abcdef0123", "key-two-0123456789abcdef0123"
BODY = {"image": "https://example.com/a.jpg"}


@pytest.fixture
def secured(env: dict[str, str]) -> Iterator[FlaskClient]:
    app = create_app(
        {
            **env,
            "SERVICE_API_KEYS": f"{KEY_ONE}, {KEY_TWO}",
            "SERVICE_ACCESS_KEY": AK,
            "SERVICE_SECRET_KEY": SK,
        }
    )
    yield app.test_client()


def token(secret: str = SK, iss: str = AK, exp_in: float = 1800, nbf_in: float = -5) -> str:
    now = time.time()
    claims = {"iss": iss, "exp": int(now + exp_in), "nbf": int(now + nbf_in)}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"})


def status_and_code(
    client: FlaskClient, bearer: str | None, path: str = "/v1/videos/image2video"
) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    response = client.get(path, headers=headers)
    return response.status_code, response.json["code"]


def test_api_keys_are_accepted_and_others_refused(secured: FlaskClient) -> None:
    assert status_and_code(secured, KEY_ONE) == (200, 0)
    assert status_and_code(secured, KEY_TWO, "/kling/v1/videos/image2video") == (200, 0)
    assert status_and_code(secured, None) == (401, 1001)
    assert status_and_code(secured, "key-three") == (401, 1002)


def test_kling_style_jwt_is_accepted(secured: FlaskClient) -> None:
    assert status_and_code(secured, token()) == (200, 0)
    response = secured.post(
        "/v1/videos/image2video", json=BODY, headers={"Authorization": f"Bearer {token()}"}
    )
    assert response.status_code == 200 and response.json["code"] == 0


@pytest.mark.parametrize(
    ("bad_token", "code"),
    [
        (token(exp_in=-60), 1004),
        (token(nbf_in=600), 1003),
        (token(secret="wrong-secret-0123456789abcdef0123"), 1002),
        (token(iss="someone-else"), 1002),
        (jwt.encode({"iss": AK}, SK, algorithm="HS256"), 1002),  # no exp: would never expire
    ],
    ids=["expired", "not yet valid", "wrong secret", "wrong issuer", "no expiry"],
)
def test_bad_jwts_are_refused_with_klings_codes(secured: FlaskClient, bad_token: str, code: int) -> None:
    assert status_and_code(secured, bad_token) == (401, code)
    response = secured.post(
        "/v1/videos/image2video", json=BODY, headers={"Authorization": f"Bearer {bad_token}"}
    )
    assert response.status_code == 401


def test_callbacks_and_health_need_no_client_credentials(secured: FlaskClient) -> None:
    assert secured.get("/healthz").status_code == 200
    assert secured.post("/callbacks/kling?token=x", json={}).status_code == 403  # the URL token guards it


def test_open_api_is_announced_loudly_and_only_when_serving(
    app: Flask, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    """gunicorn.conf.py announces it at start (tests/test_gunicorn.py); building the app, as every
    `flask` command does, stays quiet."""
    with caplog.at_level("WARNING"):
        create_app(env).test_cli_runner().invoke(args=["--help"])
    assert not any("API is OPEN" in r.message for r in caplog.records)

    with caplog.at_level("WARNING"):
        announce_if_open(app.extensions["webhook_service"].settings)
    assert [r.levelname for r in caplog.records if "API is OPEN" in r.message] == ["WARNING"]
    assert app.test_client().get("/v1/videos/image2video").status_code == 200

    caplog.clear()
    with caplog.at_level("WARNING"):
        announce_if_open(Settings.from_env({**env, "SERVICE_API_KEYS": KEY_ONE}))
    assert not any("API is OPEN" in r.message for r in caplog.records)


def claims_token(**times: float) -> str:
    """A JWT with the given time claims, as seconds from now."""
    now = time.time()
    return jwt.encode({"iss": AK, **{k: int(now + v) for k, v in times.items()}}, SK, algorithm="HS256")


@pytest.mark.parametrize(
    ("times", "start"),
    [
        ({"nbf": -5, "exp": 3600 + 60}, "nbf"),
        ({"iat": -600, "exp": 3000 + 60}, "iat"),  # iat ten minutes ago: exp 61 minutes after it
        ({"exp": 3600 + 60}, "now"),
        ({"nbf": -5, "exp": 253402300799 - time.time()}, "nbf"),  # 9999-12-31
    ],
    ids=["after nbf", "after iat", "after now", "year 9999"],
)
def test_a_jwt_living_more_than_an_hour_is_refused(
    secured: FlaskClient, times: dict[str, float], start: str
) -> None:
    response = secured.get(
        "/v1/videos/image2video", headers={"Authorization": f"Bearer {claims_token(**times)}"}
    )
    assert response.status_code == 401 and response.json["code"] == 1002
    assert f"exp may be at most 3600 s after {start}" in response.json["message"]


@pytest.mark.parametrize(
    "times",
    [
        {"nbf": -5, "exp": 3595},
        {"iat": -600, "exp": 2990},
        {"exp": 1800},
        {"nbf": 0, "iat": -7200, "exp": 3590},
    ],
    ids=["an hour after nbf", "under an hour after iat", "Kling's 30 minutes", "nbf counts before iat"],
)
def test_a_jwt_living_at_most_an_hour_is_accepted(secured: FlaskClient, times: dict[str, float]) -> None:
    assert status_and_code(secured, claims_token(**times)) == (200, 0)
