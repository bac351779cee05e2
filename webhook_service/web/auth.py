"""Who may call the API, and whose tasks it sees: a key from SERVICE_API_KEYS or SERVICE_ADMIN_KEYS (each
of a tenant), or a Kling-style JWT signed with SERVICE_SECRET_KEY (the default tenant's).

Accepting Kling's own token scheme is what lets an existing Kling client switch to this service by
changing only its base URL and credentials. Codes follow Kling: 1001 no token, 1002 bad token,
1003 not yet valid, 1004 expired. Failed attempts are counted per client address (auth_limit.py), and
an address past the limit is answered 429 before its credential is even looked at.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

import jwt
from flask import g, request

from webhook_service.config import Settings
from webhook_service.domain.tenants import DEFAULT_TENANT, EVERYONE, Scope
from webhook_service.integrations import logs
from webhook_service.services import Services
from webhook_service.web.auth_limit import FailedAuthLimit, TooManyFailures
from webhook_service.web.errors import ApiError

JWT_LEEWAY_S = 5
# Kling's own tokens live 30 minutes. A longer-lived token is a stolen credential that stays good for
# longer, so one whose exp lies further than this after it starts is refused, however it is signed.
JWT_MAX_LIFETIME_S = 3600
CODE_TOO_MANY_FAILURES = 1302  # Kling's "rate limited" code
# An open API (no client credentials configured) has no tenants to keep apart: its callers see all.
OPEN_SCOPE = EVERYONE

log = logging.getLogger(__name__)


def announce_if_open(settings: Settings) -> None:
    """Warn, once, when a service that anyone can submit tasks to starts serving (gunicorn.conf.py).

    Not in create_app: every `flask` command builds the app too, and an operator's commands would
    repeat it until nobody read it any more.
    """
    if not settings.client_auth_enabled:
        log.warning(
            "!!! The API is OPEN: no SERVICE_API_KEYS or SERVICE_ACCESS_KEY/SERVICE_SECRET_KEY are set, "
            "so anyone who can reach this service can submit tasks. Set one before exposing it. !!!"
        )


def require_client(services: Services) -> Scope:
    """The caller's scope (also kept in `flask.g` for `current_scope`), from valid client credentials;
    ApiError(401) without them, ApiError(429) while its address is over the failed-authentication limit.

    With no client credentials configured the API is open, and its callers see everything.
    """
    settings = services.settings
    if not settings.client_auth_enabled:
        g.scope = OPEN_SCOPE
        return OPEN_SCOPE
    limit = FailedAuthLimit(services.redis, services.keys)
    limit_failures(limit, request.remote_addr)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    try:
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, 1001, "Authorization header is missing: send 'Authorization: Bearer <token>'")
        grant = check_token(token, services)
    except ApiError:
        limit.record_failure(request.remote_addr)
        raise
    g.scope = grant.scope
    logs.bind(tenant=grant.scope.tenant)
    return grant.scope


def current_scope() -> Scope:
    """The scope `require_client` (or the dashboard's sign-in check) found for this request."""
    scope: Scope = g.scope
    return scope


def limit_failures(limit: FailedAuthLimit, address: str | None) -> None:
    """The API's answer to an address over the limit: 429 in Kling's envelope, with Retry-After."""
    try:
        limit.check(address)
    except TooManyFailures as refused:
        raise ApiError(
            429,
            CODE_TOO_MANY_FAILURES,
            f"too many failed authentications from this address: retry after {refused.retry_after_s} s",
            headers={"Retry-After": str(refused.retry_after_s)},
        ) from None


@dataclass(frozen=True)
class Grant:
    """What a valid credential gives: whose objects, until when (a JWT's `exp`; None for a key), and a
    name of the credential itself (`credential`: secret, only ever stored as an HMAC) by which a
    dashboard session checks on every page that it is still configured."""

    scope: Scope
    expires_at: int | None
    credential: str


def check_token(token: str, services: Services) -> Grant:
    """Raise ApiError(401) unless `token` is a configured client key or a valid client JWT.

    The dashboard's sign-in calls this too, so a person and a program get in by one rule.
    """
    settings = services.settings
    for client in settings.client_keys:
        if hmac.compare_digest(token.encode(), client.key.encode()):
            return Grant(Scope(client.tenant, client.admin), None, f"key\n{client.key}")
    if settings.service_access_key:
        expires_at = _check_jwt(token, settings)
        return Grant(Scope(DEFAULT_TENANT), expires_at, jwt_credential(settings))
    raise ApiError(401, 1002, "the bearer token is not a valid API key")


def jwt_credential(settings: Settings) -> str:
    return f"jwt\n{settings.service_access_key}\n{settings.service_secret_key}"


def configured_credentials(services: Services) -> dict[str, Scope]:
    """Every credential configured now, by the name a Grant gives it, with the scope it grants."""
    settings = services.settings
    found = {f"key\n{client.key}": Scope(client.tenant, client.admin) for client in settings.client_keys}
    if settings.service_access_key:
        found[jwt_credential(settings)] = Scope(DEFAULT_TENANT)
    return found


def _check_jwt(token: str, settings: Settings) -> int:
    try:
        claims = jwt.decode(
            token,
            settings.service_secret_key,
            algorithms=["HS256"],
            issuer=settings.service_access_key,
            leeway=JWT_LEEWAY_S,
            options={"require": ["iss", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, 1004, "the token has expired: sign a new one") from None
    except jwt.ImmatureSignatureError:
        raise ApiError(401, 1003, "the token is not valid yet (nbf in the future): check the clock") from None
    except jwt.PyJWTError:
        raise ApiError(401, 1002, "the bearer token is neither a valid API key nor a valid JWT") from None
    expires_at = int(claims["exp"])
    starts_at = claims.get("nbf", claims.get("iat", time.time()))
    if expires_at - float(starts_at) > JWT_MAX_LIFETIME_S:
        start = "nbf" if "nbf" in claims else "iat" if "iat" in claims else "now"
        raise ApiError(
            401,
            1002,
            f"the token lives too long: exp may be at most {JWT_MAX_LIFETIME_S} s after {start}; "
            "sign one that expires sooner (Kling's own live 30 minutes)",
        )
    return expires_at
