"""Per-task callback URLs that only Kling (who was given them) can know.

The token is the task's external_task_id signed with SECRET_KEY (itsdangerous, HMAC-SHA1 by default,
compared in constant time), so a callback URL cannot be guessed or moved to another task, and the
service needs no lookup to know which task a callback is for. It rides in the query string, which the
access log leaves out. For a task type other than image2video the token signs the type too, so a
callback for a task that Redis lost records it again with its type, and it is polled at its own path
(an image2video token is the id alone, as before types existed: tokens given out then still verify).
A token signed with an earlier SECRET_KEY named in SECRET_KEY_FALLBACKS still verifies: the tasks open
when the key changed keep their callbacks.
"""

from __future__ import annotations

import functools

from itsdangerous import BadSignature, URLSafeSerializer

from webhook_service.config import Settings
from webhook_service.domain.tasks import DEFAULT_TYPE

CALLBACK_PATH = "/callbacks/kling"
_SALT = "kling-callback-url"


def callback_url_for(settings: Settings, external_task_id: str, task_type: str = DEFAULT_TYPE) -> str:
    signed = external_task_id if task_type == DEFAULT_TYPE else [external_task_id, task_type]
    token = _serializer(settings.secret_key).dumps(signed)
    return f"{settings.public_base_url}{CALLBACK_PATH}?token={token}"


def task_from_token(settings: Settings, token: str) -> tuple[str, str] | None:
    """The task a token was issued for and its type, or None when the token is forged or damaged."""
    for secret_key in (settings.secret_key, *settings.secret_key_fallbacks):
        if (found := _verified(secret_key, token)) is not None:
            return found
    return None


def external_id_from_token(settings: Settings, token: str) -> str | None:
    """The task a token was issued for, or None when the token is forged or damaged."""
    found = task_from_token(settings, token)
    return found[0] if found else None


@functools.lru_cache(maxsize=4096)
def _verified(secret_key: str, token: str) -> tuple[str, str] | None:
    """Remembered: a task's callbacks (every status, every retry) all carry its one token, and checking
    it is a good part of what a callback costs. Bounded, so forged tokens can evict entries, not add
    memory; a forged token is never remembered as valid, since only the check's result is kept."""
    try:
        value = _serializer(secret_key).loads(token)
    except BadSignature:
        return None
    if isinstance(value, str):
        return value, DEFAULT_TYPE
    if isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value):
        return value[0], value[1]
    return None


@functools.lru_cache(maxsize=4)
def _serializer(secret_key: str) -> URLSafeSerializer:
    """Built once per key: every callback checks a token."""
    return URLSafeSerializer(secret_key, salt=_SALT)
