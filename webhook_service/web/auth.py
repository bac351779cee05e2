"""Who may call the API, and whose tasks it sees: a key from SERVICE_API_KEYS or SERVICE_ADMIN_KEYS (each
of a tenant), a Kling-style JWT signed with SERVICE_SECRET_KEY (the default tenant's), or a managed
client's key or JWT (domain/clients.py: its tenant's, created with `flask clients`).

The environment's credentials are checked first, in memory; a managed key costs one GET by its hash, a
managed client's JWT one GET by its issuer (the AK), whose SK then checks it. Before any of that, every
request that must authenticate reads its address's failed-authentication count (auth_limit.py: one round
trip, a pipelined GET and PTTL), and a failure adds one to count it: an environment key costs one Redis
round trip a request, a managed credential two (three when the environment has no client credentials,
which makes `client_auth_required` ask whether any managed client exists).

Accepting Kling's own token scheme is what lets an existing Kling client switch to this service by
changing only its base URL and credentials. Codes follow Kling (web/errors.py names them): 1001 no
token, 1002 bad token, 1003 not yet valid, 1004 expired. Failed attempts are counted per client address
(auth_limit.py), and an address past the limit is answered 429 (1302) before its credential is even
looked at.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

import jwt
import redis
from flask import g, request

from webhook_service.config import Settings
from webhook_service.domain.clients import Credential, ManagedClients
from webhook_service.domain.tenants import DEFAULT_TENANT, EVERYONE, Scope
from webhook_service.integrations import logs
from webhook_service.keys import Keys
from webhook_service.services import Services, managed_clients, redis_connection
from webhook_service.web.auth_limit import FailedAuthLimit, TooManyFailures
from webhook_service.web.errors import (
    CODE_BAD_TOKEN,
    CODE_NO_TOKEN,
    CODE_RATE_LIMITED,
    CODE_TOKEN_EXPIRED,
    CODE_TOKEN_NOT_YET_VALID,
    ApiError,
)

JWT_LEEWAY_S = 5
# Kling's own tokens live 30 minutes. A longer-lived token is a stolen credential that stays good for
# longer, so one whose exp lies further than this after it starts is refused, however it is signed.
JWT_MAX_LIFETIME_S = 3600
# An open API (no client credentials configured) has no tenants to keep apart: its callers see all.
OPEN_SCOPE = EVERYONE

log = logging.getLogger(__name__)


def client_auth_required(settings: Settings, clients: ManagedClients) -> bool:
    """Whether callers must authenticate: client credentials in the environment, or any managed client.

    The environment answers first, with no round trip; only a service without client credentials in
    it asks Redis (one EXISTS) on each request. Not cached: a cached "no" would leave the API open
    after the first client was created, in some processes and not others, until it ran out; and a
    deployment that wants no round trip here has its keys in the environment.
    """
    return settings.client_auth_enabled or clients.exist()


def open_at_start(settings: Settings) -> bool:
    """Whether the API is open, for gunicorn before any app exists (the bind address, the warning).
    Redis unreachable counts as open: staying on loopback and warning is the safe side of not knowing.
    (The connection is made only if the environment has no client credentials to answer with. No app
    exists yet whose Services could answer, and a whole Services would open the archive too: only the
    managed clients are built, as every process's Services reads them, under the same keys.)"""
    connection = redis_connection(settings)
    try:
        return not client_auth_required(settings, managed_clients(settings, connection, Keys()))
    except redis.RedisError:
        return True
    finally:
        connection.close()


def announce_if_open(settings: Settings) -> None:
    """Warn, once, when a service that anyone can submit tasks to starts serving (gunicorn.conf.py).

    Not in create_app: every `flask` command builds the app too, and an operator's commands would
    repeat it until nobody read it any more. An open service closes by itself when its first client
    is created (`flask clients create`), with no restart.
    """
    if open_at_start(settings):
        log.warning(
            "!!! The API is OPEN: no SERVICE_API_KEYS or SERVICE_ACCESS_KEY/SERVICE_SECRET_KEY are set "
            "and no client was created with `flask clients create`, so anyone who can reach this "
            "service can submit tasks. Set or create one before exposing it. !!!"
        )


def require_client(services: Services) -> Scope:
    """The caller's scope (also kept in `flask.g` for `current_scope`), from valid client credentials;
    ApiError(401) without them, ApiError(429) while its address is over the failed-authentication limit.

    With no client credentials configured the API is open, and its callers see everything.
    """
    if not client_auth_required(services.settings, services.clients):
        g.scope = OPEN_SCOPE
        return OPEN_SCOPE
    limit = FailedAuthLimit(services.redis, services.keys)
    limit_failures(limit, request.remote_addr)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    try:
        if not header.strip():
            raise ApiError(
                401, CODE_NO_TOKEN, "Authorization header is missing: send 'Authorization: Bearer <token>'"
            )
        if scheme.lower() != "bearer" or not token:
            if token:
                wrong = f"uses the {scheme[:20]!r} scheme"
            elif scheme.lower() == "bearer":
                wrong = "has no token after 'Bearer'"
            else:  # a token without its scheme, or a scheme without its token: which, it cannot tell
                wrong = "is one word, not a scheme and a token"
            raise ApiError(
                401, CODE_NO_TOKEN, f"Authorization header {wrong}: send 'Authorization: Bearer <token>'"
            )
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
            CODE_RATE_LIMITED,
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
    """Raise ApiError(401) unless `token` is a client key or a valid client JWT, from the environment
    or of a managed client.

    The dashboard's sign-in calls this too, so a person and a program get in by one rule.
    """
    settings = services.settings
    for client in settings.client_keys:
        if hmac.compare_digest(token.encode(), client.key.encode()):
            return Grant(Scope(client.tenant, client.admin), None, f"key\n{client.key}")
    if token.count(".") == 2:  # a JWT's header, claims and signature; no managed key has a dot
        return _check_any_jwt(token, services)
    managed = services.clients.by_key(token)
    if managed is None:
        raise ApiError(401, CODE_BAD_TOKEN, "the bearer token is not a valid API key")
    return Grant(managed.scope, None, managed_credential(managed))


def jwt_credential(settings: Settings) -> str:
    return f"jwt\n{settings.service_access_key}\n{settings.service_secret_key}"


def managed_credential(credential: Credential) -> str:
    """A managed key by its hash, a managed JWT by its AK: each rotation makes new ones."""
    return f"managed-{credential.kind}\n{credential.ident}"


def configured_credentials(services: Services) -> dict[str, Scope]:
    """Every credential valid now, by the name a Grant gives it, with the scope it grants."""
    settings = services.settings
    found = {f"key\n{client.key}": Scope(client.tenant, client.admin) for client in settings.client_keys}
    if settings.service_access_key:
        found[jwt_credential(settings)] = Scope(DEFAULT_TENANT)
    found.update({managed_credential(c): c.scope for c in services.clients.credentials()})
    return found


def _check_any_jwt(token: str, services: Services) -> Grant:
    """The environment's JWT by its issuer, with no round trip; else a managed client's, whose SK is
    found by the token's (still unverified) issuer and then checks its signature."""
    settings = services.settings
    try:
        issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        issuer = None
    if not isinstance(issuer, str) or not issuer:
        raise ApiError(401, CODE_BAD_TOKEN, "the bearer token is neither a valid API key nor a valid JWT")
    if settings.service_access_key and hmac.compare_digest(
        issuer.encode(), settings.service_access_key.encode()
    ):
        expires_at = _check_jwt(token, settings.service_access_key, settings.service_secret_key)
        return Grant(Scope(DEFAULT_TENANT), expires_at, jwt_credential(settings))
    found = services.clients.by_access_key(issuer)
    if found is None:
        raise ApiError(401, CODE_BAD_TOKEN, "the bearer token is neither a valid API key nor a valid JWT")
    credential, secret_key = found
    return Grant(credential.scope, _check_jwt(token, issuer, secret_key), managed_credential(credential))


def _check_jwt(token: str, access_key: str, secret_key: str) -> int:
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=["HS256"],
            issuer=access_key,
            leeway=JWT_LEEWAY_S,
            options={"require": ["iss", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, CODE_TOKEN_EXPIRED, "the token has expired: sign a new one") from None
    except jwt.ImmatureSignatureError:
        raise ApiError(
            401, CODE_TOKEN_NOT_YET_VALID, "the token is not valid yet (nbf in the future): check the clock"
        ) from None
    except jwt.PyJWTError:
        raise ApiError(
            401, CODE_BAD_TOKEN, "the bearer token is neither a valid API key nor a valid JWT"
        ) from None
    expires_at = int(claims["exp"])
    starts_at = claims.get("nbf", claims.get("iat", time.time()))
    if expires_at - float(starts_at) > JWT_MAX_LIFETIME_S:
        start = "nbf" if "nbf" in claims else "iat" if "iat" in claims else "now"
        raise ApiError(
            401,
            CODE_BAD_TOKEN,
            f"the token lives too long: exp may be at most {JWT_MAX_LIFETIME_S} s after {start}; "
            "sign one that expires sooner (Kling's own live 30 minutes)",
        )
    return expires_at
