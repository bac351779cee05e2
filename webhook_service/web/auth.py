"""Who may call the API: a key from SERVICE_API_KEYS, or a Kling-style JWT signed with SERVICE_SECRET_KEY.

Accepting Kling's own token scheme is what lets an existing Kling client switch to this service by
changing only its base URL and credentials. Codes follow Kling: 1001 no token, 1002 bad token,
1003 not yet valid, 1004 expired. Failed attempts are counted per client address (auth_limit.py), and
an address past the limit is answered 429 before its credential is even looked at.
"""

from __future__ import annotations

import hmac
import logging
import time

import jwt
from flask import request

from webhook_service.config import Settings
from webhook_service.services import Services
from webhook_service.web.auth_limit import FailedAuthLimit, TooManyFailures
from webhook_service.web.errors import ApiError

JWT_LEEWAY_S = 5
# Kling's own tokens live 30 minutes. A longer-lived token is a stolen credential that stays good for
# longer, so one whose exp lies further than this after it starts is refused, however it is signed.
JWT_MAX_LIFETIME_S = 3600
CODE_TOO_MANY_FAILURES = 1302  # Kling's "rate limited" code

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


def require_client(services: Services) -> None:
    """Raise ApiError(401) unless the request carries valid client credentials (or none are configured),
    and ApiError(429) while its address is over the failed-authentication limit."""
    settings = services.settings
    if not settings.client_auth_enabled:
        return
    limit = FailedAuthLimit(services.redis, services.keys)
    limit_failures(limit, request.remote_addr)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    try:
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, 1001, "Authorization header is missing: send 'Authorization: Bearer <token>'")
        check_token(token, settings)
    except ApiError:
        limit.record_failure(request.remote_addr)
        raise


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


def check_token(token: str, settings: Settings) -> int | None:
    """Raise ApiError(401) unless `token` is a key from SERVICE_API_KEYS or a valid client JWT.

    Returns the JWT's `exp` (epoch seconds), or None for an API key, which is good for as long as it is
    configured. The dashboard's sign-in calls this too, so a person and a program get in by one rule.
    """
    if any(hmac.compare_digest(token.encode(), key.encode()) for key in settings.service_api_keys):
        return None
    if settings.service_access_key:
        return _check_jwt(token, settings)
    raise ApiError(401, 1002, "the bearer token is not a valid API key")


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
