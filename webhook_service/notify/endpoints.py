"""Webhook endpoints that tenants manage themselves (`/v1/endpoints`, web/endpoints_api.py).

Beside the operator's NOTIFY_WEBHOOK_URLS (every tenant's events, one secret) and each task's
callback_url, a tenant registers endpoints of its own. Each has its own `whsec_` secret, shown once and
kept encrypted (domain/sealing.py: the service signs with it, so it cannot be hashed), its event filter
(default: every event), an optional rate limit, and its own enabled state. The tenant's tasks' events
go to its enabled endpoints whose filter takes them (notify/send.py); another tenant's endpoint is as
absent as a missing one, and an admin sees them all.

The fields a client sends are checked in notify/endpoint_fields.py (the URL by the SSRF guard too).

Rotating the secret keeps the old one signing beside the new one for ROTATION_GRACE_S: Standard Webhooks
lets `webhook-signature` carry several signatures, and a receiver accepts a message when any of them
verifies, so one that still has the old secret and one that already has the new one both accept every
message while the new secret is rolled out.
"""

from __future__ import annotations

import base64
import builtins
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline
from redis.typing import EncodableT

from webhook_service.domain import activity
from webhook_service.domain.clock import now_ms
from webhook_service.domain.events import EVENT_TYPES
from webhook_service.domain.sealing import cipher
from webhook_service.domain.tenants import EVERYONE, Scope
from webhook_service.keys import Keys
from webhook_service.replies import hash_fields, stored_json, text, texts

PING = "ping"  # sent by `POST /v1/endpoints/<id>/test` only, whatever the filter
# A day, as for client keys (domain/clients.py): a receiver deployed at least daily picks up the new
# secret within it.
ROTATION_GRACE_S = 24 * 3600
ATTEMPTS_KEPT = 20
WANTED_MEMO_S = 5.0
WANTED_MEMO_SIZE = 1024  # tenants remembered at once; past it the memo starts again
# Fixed for good (sealing.py): another purpose would make every stored secret unreadable.
_SECRET_PURPOSE = b"webhook_service: webhook endpoints' signing secrets, v1"
_SEALED_FIELDS = ("secret", "old_secret")  # the current signing secret, and the one rotated out


@dataclass(frozen=True)
class Endpoint:
    id: str
    tenant: str
    url: str
    event_types: tuple[str, ...] = ()  # empty: every event
    description: str = ""
    rate_limit_per_s: float | None = None
    enabled: bool = True
    created_at: int = 0
    updated_at: int = 0
    disabled_at: int | None = None
    disabled_reason: str | None = None  # gone (410), failing, requested, deleted (endpoint_deletion.py)
    failing_since: int | None = None  # the first failed attempt since the last success
    old_secret_until: int | None = None  # a rotated-out secret still signs until then

    def wants(self, event_type: str) -> bool:
        return event_type in (self.event_types or EVENT_TYPES)

    def view(self) -> dict[str, Any]:
        """As the API shows it to the endpoint's tenant: never its secret."""
        return {
            "id": self.id,
            "tenant": self.tenant,
            "url": self.url,
            "event_types": list(self.event_types or EVENT_TYPES),
            "description": self.description,
            "rate_limit_per_s": self.rate_limit_per_s,
            "enabled": self.enabled,
            "disabled_at": self.disabled_at,
            "disabled_reason": self.disabled_reason,
            "failing_since": self.failing_since,
            "old_secret_until": self.old_secret_until if (self.old_secret_until or 0) > now_ms() else None,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in Base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _stored(fields: dict[str, Any]) -> dict[EncodableT, EncodableT]:
    """The hash fields for checked API fields; a None clears its field (see `_cleared`)."""
    stored: dict[EncodableT, EncodableT] = {}
    for name, value in fields.items():
        if name == "event_types":
            stored[name] = json.dumps(sorted(set(value or ())))
        elif name == "enabled":
            stored[name] = "1" if value else "0"
        elif value is not None:
            stored[name] = str(value)
    return stored


def _cleared(fields: dict[str, Any]) -> list[str]:
    return [name for name, value in fields.items() if value is None and name != "event_types"]


def _number(raw: dict[str, str], name: str) -> int | None:
    return int(raw[name]) if name in raw else None


def _endpoint(endpoint_id: str, raw: dict[str, str]) -> Endpoint:
    return Endpoint(
        id=endpoint_id,
        tenant=raw["tenant"],
        url=raw["url"],
        event_types=tuple(json.loads(raw.get("event_types", "[]"))),
        description=raw.get("description", ""),
        rate_limit_per_s=float(raw["rate_limit_per_s"]) if "rate_limit_per_s" in raw else None,
        enabled=raw.get("enabled") == "1",
        created_at=int(raw["created_at"]),
        updated_at=int(raw["updated_at"]),
        disabled_at=_number(raw, "disabled_at"),
        disabled_reason=raw.get("disabled_reason"),
        failing_since=_number(raw, "failing_since"),
        old_secret_until=_number(raw, "old_secret_until"),
    )


_ENABLED_AGAIN = ("disabled_at", "disabled_reason", "failing_since")


def _load(connection: redis.Redis, keys: Keys, ids: list[str]) -> list[Endpoint]:
    """The endpoints of `ids` that exist, oldest first: one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for endpoint_id in ids:
            pipe.hgetall(keys.endpoint(endpoint_id))
        raws = [hash_fields(raw) for raw in pipe.execute()]
    found = [_endpoint(i, raw) for i, raw in zip(ids, raws, strict=True) if "url" in raw]
    return sorted(found, key=lambda e: (e.created_at, e.id))


class EndpointStore:
    def __init__(
        self, connection: redis.Redis, keys: Keys, secret_key: str, fallbacks: Sequence[str] = ()
    ) -> None:
        self.redis = connection
        self.keys = keys
        self._cipher = cipher(secret_key, _SECRET_PURPOSE, fallbacks)

    # --- reading ---

    def get(self, endpoint_id: str, scope: Scope = EVERYONE) -> Endpoint | None:
        """The endpoint, if `scope` may see it: another tenant's is as absent as a missing one."""
        raw = hash_fields(self.redis.hgetall(self.keys.endpoint(endpoint_id)))
        found = _endpoint(endpoint_id, raw) if "url" in raw else None
        return found if found is not None and scope.sees(found.tenant) else None

    def list(self, scope: Scope) -> builtins.list[Endpoint]:
        """Oldest first: the tenant's, or every tenant's for an admin."""
        index = self.keys.endpoints if scope.admin else self.keys.tenant_endpoints(scope.tenant)
        return [
            e for e in _load(self.redis, self.keys, texts(self.redis.smembers(index))) if scope.sees(e.tenant)
        ]

    def of_tenant(self, tenant: str) -> builtins.list[Endpoint]:
        return self.list(Scope(tenant))

    def signing_secrets(self, endpoint_id: str) -> tuple[str, ...]:
        """The current secret, and the rotated-out one while its grace lasts."""
        raw = hash_fields(self.redis.hgetall(self.keys.endpoint(endpoint_id)))
        sealed = [raw["secret"]] if "secret" in raw else []
        if "old_secret" in raw and int(raw.get("old_secret_until", 0)) > now_ms():
            sealed.append(raw["old_secret"])
        return tuple(self._cipher.decrypt(secret.encode()).decode() for secret in sealed)

    def last_hours(self, endpoint_id: str) -> builtins.list[activity.Hour]:
        """Its attempts in each of the last 24 hours (domain/activity.py): one round trip."""
        hours = activity.empty_hours()
        with self.redis.pipeline(transaction=False) as pipe:
            for hour in hours:
                pipe.hgetall(self.keys.endpoint_activity(endpoint_id, activity.hour_name(hour.start)))
            for hour, stored in zip(hours, pipe.execute(), strict=True):
                hour.add(stored)
        return hours

    def attempts(self, endpoint_id: str) -> builtins.list[dict[str, Any]]:
        """Its last attempts, newest first."""
        return [json.loads(raw) for raw in self.redis.lrange(self.keys.endpoint_attempts(endpoint_id), 0, -1)]

    # --- changing ---

    def reseal(self) -> int:
        """Seal every endpoint's secrets again under the current SECRET_KEY (a rotation meanwhile is
        not overwritten: compare-and-set); how many endpoints had some."""
        done = 0
        for endpoint_id in texts(self.redis.smembers(self.keys.endpoints)):
            key = self.keys.endpoint(endpoint_id)

            def write(pipe: Pipeline, key: str = key) -> bool:
                stored = zip(_SEALED_FIELDS, pipe.hmget(key, list(_SEALED_FIELDS)), strict=True)
                fresh = {field: self._cipher.rotate(value).decode() for field, value in stored if value}
                if not fresh:
                    return False
                pipe.multi()
                pipe.hset(key, mapping=fresh)  # type: ignore[arg-type]
                return True

            done += self._atomically(key, write)
        return done

    def create(self, tenant: str, fields: dict[str, Any]) -> tuple[Endpoint, str]:
        """A new endpoint of `tenant` from checked fields (`checked`), and its secret, shown once."""
        endpoint_id = "ep_" + secrets.token_hex(12)
        secret = new_secret()
        now = str(now_ms())
        record: dict[EncodableT, EncodableT] = {
            **_stored(fields),
            "tenant": tenant,
            "enabled": "1",
            "created_at": now,
            "updated_at": now,
            "secret": self._cipher.encrypt(secret.encode()).decode(),
        }
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.endpoint(endpoint_id), mapping=record)
            pipe.sadd(self.keys.endpoints, endpoint_id)
            pipe.sadd(self.keys.tenant_endpoints(tenant), endpoint_id)
            pipe.execute()
        _forget_wanted(self.keys, tenant)
        created = self.get(endpoint_id)
        assert created is not None
        return created, secret

    def update(self, endpoint_id: str, scope: Scope, fields: dict[str, Any]) -> Endpoint | None:
        """Apply checked fields; enabling clears why it was disabled and its failures' start. None when
        there is no such endpoint for `scope`."""
        if (found := self.get(endpoint_id, scope)) is None:
            return None
        _forget_wanted(self.keys, found.tenant)
        changes = {**_stored(fields), "updated_at": str(now_ms())}
        cleared = _cleared(fields)
        if fields.get("enabled") is True:
            cleared += _ENABLED_AGAIN
        elif fields.get("enabled") is False:
            changes.update(disabled_at=str(now_ms()), disabled_reason="requested")
        self._change(endpoint_id, changes, cleared)
        return self.get(endpoint_id, scope)

    def _change(
        self, endpoint_id: str, changes: dict[EncodableT, EncodableT], cleared: builtins.list[str]
    ) -> bool:
        """Write `changes` unless the endpoint was deleted meanwhile (a write would bring back a part of
        it): WATCH, check, write."""
        key = self.keys.endpoint(endpoint_id)

        def write(pipe: Pipeline) -> bool:
            if not pipe.exists(key):
                return False
            pipe.multi()
            pipe.hset(key, mapping=changes)
            if cleared:
                pipe.hdel(key, *cleared)
            return True

        return self._atomically(key, write)

    def _atomically(self, key: str, write: Callable[[Pipeline], bool]) -> bool:
        """Run `write` under WATCH of `key`, again whenever `key` changed meanwhile: it reads, then calls
        `multi()` and queues its writes, or returns False to write nothing."""
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    if not write(pipe):
                        return False
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def rotate(self, endpoint_id: str, scope: Scope) -> tuple[Endpoint, str] | None:
        """A new secret, shown once; the current one keeps signing beside it for ROTATION_GRACE_S (a
        secret rotated out earlier stops now: one old secret at most)."""
        key = self.keys.endpoint(endpoint_id)
        if self.get(endpoint_id, scope) is None:
            return None
        secret = new_secret()

        def write(pipe: Pipeline) -> bool:
            current = pipe.hget(key, "secret")
            if current is None:
                return False
            now = now_ms()
            pipe.multi()
            pipe.hset(
                key,
                mapping={
                    "secret": self._cipher.encrypt(secret.encode()).decode(),
                    "old_secret": text(current),
                    "old_secret_until": str(now + ROTATION_GRACE_S * 1000),
                    "updated_at": str(now),
                },
            )
            return True

        if not self._atomically(key, write):
            return None
        rotated = self.get(endpoint_id, scope)
        return (rotated, secret) if rotated is not None else None

    def delete(self, endpoint_id: str, scope: Scope) -> bool:
        found = self.get(endpoint_id, scope)
        if found is None:
            return False
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(
                self.keys.endpoint(endpoint_id),
                self.keys.endpoint_attempts(endpoint_id),
                self.keys.endpoint_pending(endpoint_id),
                self.keys.turn_waiting(endpoint_id),
                *(
                    self.keys.endpoint_activity(endpoint_id, activity.hour_name(h.start))
                    for h in activity.empty_hours()
                ),
            )
            pipe.srem(self.keys.endpoints, endpoint_id)
            pipe.srem(self.keys.tenant_endpoints(found.tenant), endpoint_id)
            pipe.execute()
        _forget_wanted(self.keys, found.tenant)
        return True

    def record_attempt(self, endpoint_id: str, record: dict[str, Any], delivered: bool) -> None:
        """An attempt made outside any delivery (a test event): it counts like any other."""
        key = self.keys.endpoint(endpoint_id)

        def write(pipe: Pipeline) -> bool:
            if not pipe.exists(key):
                return False
            pipe.multi()
            attempt_made(pipe, self.keys, endpoint_id, record, delivered)
            return True

        self._atomically(key, write)

    def disable(self, endpoint_id: str, reason: str) -> Endpoint | None:
        """Disable an enabled endpoint; None when it is already disabled or gone, so that whoever
        disables it first is the one who tells (the `endpoint.disabled` event)."""
        key = self.keys.endpoint(endpoint_id)

        def write(pipe: Pipeline) -> bool:
            if pipe.hget(key, "enabled") != b"1":
                return False
            now = str(now_ms())
            pipe.multi()
            pipe.hset(key, mapping={"enabled": "0", "disabled_at": now, "disabled_reason": reason})
            pipe.hset(key, "updated_at", now)
            return True

        if not self._atomically(key, write):
            return None
        return self.get(endpoint_id)


# (key prefix, tenant) -> (until when, the tenant's endpoints): see `wanted`.
_wanted_memo: dict[tuple[str, str], tuple[float, tuple[Endpoint, ...]]] = {}


def wanted(connection: redis.Redis, keys: Keys, tenant: str, event_type: str) -> bool:
    """Whether any endpoint of `tenant` takes `event_type` (a disabled one's deliveries are recorded as
    skipped).

    Asked inside every change that raises an event, a callback's included: the tenant's endpoints are
    remembered in this process for WANTED_MEMO_S, so a callback that brings news costs no round trip
    more than it did before endpoints existed. An endpoint created or changed in this process is seen
    at once; in another process, within WANTED_MEMO_S (docs/notifications.md says so)."""
    memo_key = (keys.prefix, tenant)
    remembered = _wanted_memo.get(memo_key)
    if remembered is None or remembered[0] < time.monotonic():
        ids = texts(connection.smembers(keys.tenant_endpoints(tenant)))
        found = tuple(_load(connection, keys, ids)) if ids else ()
        if len(_wanted_memo) >= WANTED_MEMO_SIZE:
            _wanted_memo.clear()
        remembered = _wanted_memo[memo_key] = (time.monotonic() + WANTED_MEMO_S, found)
    return any(endpoint.wants(event_type) for endpoint in remembered[1])


def _forget_wanted(keys: Keys, tenant: str) -> None:
    _wanted_memo.pop((keys.prefix, tenant), None)


def attempt_made(
    pipe: Pipeline, keys: Keys, endpoint_id: str, record: dict[str, Any], delivered: bool
) -> None:
    """Queue an attempt's trace on its endpoint, on the caller's transaction: its last attempts, and
    since when it has failed without a success. The caller has checked, under WATCH, that the endpoint
    exists: these writes would otherwise bring a deleted one partly back. Each attempt counts in its
    hour, as domain/activity.py counts a tenant's, for the dashboard's chart of the endpoint."""
    attempts = keys.endpoint_attempts(endpoint_id)
    pipe.lpush(attempts, stored_json(record))
    pipe.ltrim(attempts, 0, ATTEMPTS_KEPT - 1)
    hourly = keys.endpoint_activity(endpoint_id, activity.hour_name(activity.hour_of(record["at"])))
    pipe.hincrby(hourly, activity.attempt_field(delivered), 1)
    pipe.expire(hourly, activity.TTL_S)
    if delivered:
        pipe.hdel(keys.endpoint(endpoint_id), "failing_since")
    else:
        pipe.hsetnx(keys.endpoint(endpoint_id), "failing_since", str(record["at"]))
