"""Who is signed in to the dashboard: an operator who pasted a client credential, kept in Flask's session.

The cookie is signed with SECRET_KEY but readable, so it never holds the credential itself: only an
HMAC of it (for an API key) or of the JWT signing key (for a JWT), and the JWT's expiry. Each request
checks that fingerprint against the credentials configured now, so taking a key out of
SERVICE_API_KEYS (or rotating SERVICE_SECRET_KEY) signs out every session that used it.

A signed cookie alone cannot be taken back: a copy made before logout would stay good until it
expired. So each sign-in also gets a random session id, kept in Redis for the session's absolute
lifetime (SESSION_ABSOLUTE_LIFETIME_S from sign-in, however active) and deleted by logout; a cookie
whose id Redis no longer has is signed out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from flask import session

from webhook_service.config import Settings
from webhook_service.services import Services
from webhook_service.web.auth import JWT_LEEWAY_S, check_token

SESSION_KEY = "operator"
SESSION_ABSOLUTE_LIFETIME_S = 12 * 3600


def _fingerprint(settings: Settings, kind: str, secret: str) -> str:
    message = f"{kind}\n{secret}".encode()
    return hmac.new(settings.secret_key.encode(), message, hashlib.sha256).hexdigest()


def _jwt_fingerprint(settings: Settings) -> str:
    return _fingerprint(settings, "jwt", f"{settings.service_access_key}\n{settings.service_secret_key}")


def sign_in(services: Services, token: str) -> None:
    """Start a session for `token`; raises ApiError(401) when the API would refuse it too."""
    settings = services.settings
    expires_at = check_token(token, settings)
    fingerprint = _fingerprint(settings, "key", token) if expires_at is None else _jwt_fingerprint(settings)
    session_id = secrets.token_urlsafe(32)
    signed_in_at = int(time.time())
    services.redis.set(
        services.keys.dashboard_session(session_id), signed_in_at, ex=SESSION_ABSOLUTE_LIFETIME_S
    )
    session.clear()  # a fresh session (and CSRF token) for the signed-in operator
    session[SESSION_KEY] = {"credential": fingerprint, "exp": expires_at, "sid": session_id}
    session.permanent = True


def sign_out(services: Services) -> None:
    grant = session.get(SESSION_KEY)
    if isinstance(grant, dict) and isinstance(grant.get("sid"), str):
        services.redis.delete(services.keys.dashboard_session(grant["sid"]))
    session.clear()


def signed_in(services: Services) -> bool:
    """Whether this request may see the dashboard: always when the API itself is open."""
    settings = services.settings
    if not settings.client_auth_enabled:
        return True
    grant = session.get(SESSION_KEY)
    if not isinstance(grant, dict) or not isinstance(grant.get("sid"), str):
        return False
    expires_at = grant.get("exp")
    if expires_at is not None and time.time() > expires_at + JWT_LEEWAY_S:
        return False
    valid = {_fingerprint(settings, "key", key) for key in settings.service_api_keys}
    if settings.service_access_key:
        valid.add(_jwt_fingerprint(settings))
    if not any(hmac.compare_digest(str(grant.get("credential")), fp) for fp in valid):
        return False
    return bool(services.redis.exists(services.keys.dashboard_session(grant["sid"])))
