"""Who is signed in to the dashboard: an operator who pasted a client credential, kept in Flask's session.

The cookie is signed with SECRET_KEY but readable, so it never holds the credential itself: only an
HMAC of it (for an API key) or of the JWT signing key (for a JWT), and the JWT's expiry. Each request
checks that fingerprint against the credentials valid now, so taking a key out of SERVICE_API_KEYS
(or rotating SERVICE_SECRET_KEY), or revoking a managed client (or its rotated-out key's grace
ending), signs out every session that used it, and the tenant the session sees is the one its
credential belongs to now.

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
from webhook_service.domain.tenants import Scope
from webhook_service.services import Services
from webhook_service.web.auth import (
    JWT_LEEWAY_S,
    OPEN_SCOPE,
    check_token,
    client_auth_required,
    configured_credentials,
)

SESSION_KEY = "operator"
SESSION_ABSOLUTE_LIFETIME_S = 12 * 3600


def _fingerprint(settings: Settings, credential: str) -> str:
    return hmac.new(settings.secret_key.encode(), credential.encode(), hashlib.sha256).hexdigest()


def sign_in(services: Services, token: str) -> None:
    """Start a session for `token`; raises ApiError(401) when the API would refuse it too."""
    settings = services.settings
    grant = check_token(token, services)
    session_id = secrets.token_urlsafe(32)
    signed_in_at = int(time.time())
    services.redis.set(
        services.keys.dashboard_session(session_id), signed_in_at, ex=SESSION_ABSOLUTE_LIFETIME_S
    )
    session.clear()  # a fresh session (and CSRF token) for the signed-in operator
    session[SESSION_KEY] = {
        "credential": _fingerprint(settings, grant.credential),
        "exp": grant.expires_at,
        "sid": session_id,
    }
    session.permanent = True


def sign_out(services: Services) -> None:
    grant = session.get(SESSION_KEY)
    if isinstance(grant, dict) and isinstance(grant.get("sid"), str):
        services.redis.delete(services.keys.dashboard_session(grant["sid"]))
    session.clear()


def signed_in(services: Services) -> Scope | None:
    """Whose dashboard this request may see: None when it must sign in; everything when the API itself
    is open. The scope is the one the credential grants now (configuration may have changed it)."""
    settings = services.settings
    if not client_auth_required(settings, services.clients):
        return OPEN_SCOPE
    grant = session.get(SESSION_KEY)
    if not isinstance(grant, dict) or not isinstance(grant.get("sid"), str):
        return None
    expires_at = grant.get("exp")
    if expires_at is not None and time.time() > expires_at + JWT_LEEWAY_S:
        return None
    scope = None
    for credential, granted in configured_credentials(services).items():
        if hmac.compare_digest(str(grant.get("credential")), _fingerprint(settings, credential)):
            scope = granted
    if scope is None or not services.redis.exists(services.keys.dashboard_session(grant["sid"])):
        return None
    return scope
