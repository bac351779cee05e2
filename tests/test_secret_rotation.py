"""SECRET_KEY can change without losing what was sealed or signed under it: with the earlier key in
SECRET_KEY_FALLBACKS, endpoints' signing secrets, clients' JWT secret keys and open tasks' callback URLs
all still work; `flask secrets reseal` seals the stored secrets again under the new key, after which
the earlier one can go. Without the fallback they are unreadable, as before."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.fernet import InvalidToken

from webhook_service.config import ConfigError, Settings
from webhook_service.domain.callback_tokens import callback_url_for, task_from_token
from webhook_service.domain.tenants import Scope
from webhook_service.integrations.logs import secret_values
from webhook_service.services import Services
from webhook_service.web.app import create_app

NEW_KEY = "the-new-secret-key-0123456789abcdef"


def services(env: dict[str, str], **changes: str) -> Services:
    return Services.build(Settings.from_env({**env, **changes}))


def test_stored_secrets_survive_a_new_secret_key_with_the_old_one_as_fallback(env: dict[str, str]) -> None:
    old_key = env["SECRET_KEY"]
    before = services(env)
    endpoint, signing_secret = before.endpoints.create("default", {"url": "http://127.0.0.1:9/hook"})
    issued = before.clients.create("team-a", with_jwt=True)
    assert issued.access_key and issued.secret_key

    alone = services(env, SECRET_KEY=NEW_KEY)  # the key changed, the old one forgotten: unreadable
    with pytest.raises(InvalidToken):
        alone.endpoints.signing_secrets(endpoint.id)
    assert alone.clients.by_access_key(issued.access_key) is None

    after = services(env, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=old_key)
    assert after.endpoints.signing_secrets(endpoint.id) == (signing_secret,)
    found = after.clients.by_access_key(issued.access_key)
    assert found is not None and found[1] == issued.secret_key

    # A JWT signed with the client's SK is accepted by the running service under the new key.
    app = create_app({**env, "SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": old_key})
    now = int(time.time())
    token = jwt.encode({"iss": issued.access_key, "exp": now + 600, "nbf": now - 5}, issued.secret_key)
    listed = app.test_client().get("/v1/tasks", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text

    assert (after.endpoints.reseal(), after.clients.reseal()) == (1, 1)
    resealed = services(env, SECRET_KEY=NEW_KEY)  # the old key gone for good
    assert resealed.endpoints.signing_secrets(endpoint.id) == (signing_secret,)
    found = resealed.clients.by_access_key(issued.access_key)
    assert found is not None and found[1] == issued.secret_key
    assert (resealed.endpoints.reseal(), resealed.clients.reseal()) == (1, 1)  # again: harmless


def test_a_rotated_out_secret_is_resealed_too_and_a_revoked_key_stays_revoked(env: dict[str, str]) -> None:
    old_key = env["SECRET_KEY"]
    before = services(env)
    endpoint, first = before.endpoints.create("default", {"url": "http://127.0.0.1:9/hook"})
    rotated = before.endpoints.rotate(endpoint.id, Scope("default"))
    assert rotated is not None
    second = rotated[1]
    issued = before.clients.create("team-b", with_jwt=True)
    before.clients.revoke("team-b", forget_limits=True)

    after = services(env, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=old_key)
    assert after.endpoints.reseal() == 1 and after.clients.reseal() == 0
    assert services(env, SECRET_KEY=NEW_KEY).endpoints.signing_secrets(endpoint.id) == (second, first)
    assert after.clients.by_access_key(issued.access_key or "") is None


def test_open_tasks_callback_urls_signed_with_the_old_key_still_verify(env: dict[str, str]) -> None:
    old = Settings.from_env(env)
    url = callback_url_for(old, "task-open-at-the-change", "text2video")
    token = url.split("token=", 1)[1]
    assert task_from_token(Settings.from_env({**env, "SECRET_KEY": NEW_KEY}), token) is None
    rotated = Settings.from_env({**env, "SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": env["SECRET_KEY"]})
    assert task_from_token(rotated, token) == ("task-open-at-the-change", "text2video")
    fresh = callback_url_for(rotated, "task-after").split("token=", 1)[1]
    assert task_from_token(Settings.from_env({**env, "SECRET_KEY": NEW_KEY}), fresh) == (
        "task-after",
        "image2video",
    )


def test_a_short_fallback_is_refused_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY_FALLBACKS"):
        Settings.from_env({**env, "SECRET_KEY_FALLBACKS": "short"})


def test_an_earlier_key_is_a_secret_too_never_logged(env: dict[str, str]) -> None:
    settings = Settings.from_env({**env, "SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": env["SECRET_KEY"]})
    assert {NEW_KEY, env["SECRET_KEY"]} <= set(secret_values(settings))


def test_the_cli_reseals_and_says_how_many(env: dict[str, str]) -> None:
    old_key = env["SECRET_KEY"]
    services(env).endpoints.create("default", {"url": "http://127.0.0.1:9/hook"})
    app = create_app({**env, "SECRET_KEY": NEW_KEY, "SECRET_KEY_FALLBACKS": old_key})
    result = app.test_cli_runner().invoke(args=["secrets", "reseal"])
    assert result.exit_code == 0, result.output
    assert "1 endpoint(s), 0 JWT secret key(s)" in result.output
