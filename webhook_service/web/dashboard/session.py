"""Who is signed in to the dashboard: an operator who pasted a client credential, kept in Flask's session.

The cookie is signed with SECRET_KEY but readable, so it never holds the credential itself: only an
HMAC of it (for an API key) or of the JWT signing key (for a JWT), and the JWT's expiry. Each request
checks that fingerprint against the credentials configured now, so taking a key out of
SERVICE_API_KEYS (or rotating SERVICE_SECRET_KEY) signs out every session that used it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from flask import session

from webhook_service.config import Settings
from webhook_service.web.auth import JWT_LEEWAY_S, check_token

SESSION_KEY = "operator"


def _fingerprint(settings: Settings, kind: str, secret: str) -> str:
    message = f"{kind}\n{secret}".encode()
    return hmac.new(settings.secret_key.encode(), message, hashlib.sha256).hexdigest()


def _jwt_fingerprint(settings: Settings) -> str:
    return _fingerprint(settings, "jwt", f"{settings.service_access_key}\n{settings.service_secret_key}")


def sign_in(settings: Settings, token: str) -> None:
    """Start a session for `token`; raises ApiError(401) when the API would refuse it too."""
    expires_at = check_token(token, settings)
    fingerprint = _fingerprint(settings, "key", token) if expires_at is None else _jwt_fingerprint(settings)
    session.clear()  # a fresh session (and CSRF token) for the signed-in operator
    session[SESSION_KEY] = {"credential": fingerprint, "exp": expires_at}
    session.permanent = True


def sign_out() -> None:
    session.clear()


def signed_in(settings: Settings) -> bool:
    """Whether this request may see the dashboard: always when the API itself is open."""
    if not settings.client_auth_enabled:
        return True
    grant = session.get(SESSION_KEY)
    if not isinstance(grant, dict):
        return False
    expires_at = grant.get("exp")
    if expires_at is not None and time.time() > expires_at + JWT_LEEWAY_S:
        return False
    valid = {_fingerprint(settings, "key", key) for key in settings.service_api_keys}
    if settings.service_access_key:
        valid.add(_jwt_fingerprint(settings))
    return any(hmac.compare_digest(str(grant.get("credential")), fp) for fp in valid)
