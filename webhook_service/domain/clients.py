"""Managed clients: credentials created, rotated and revoked while the service runs (`flask clients`),
kept in Redis beside the fixed ones of the environment (config.py's SERVICE_API_KEYS).

A managed client is named after its tenant (domain/tenants.py). It holds a key, and, if asked for, a
Kling-style access key / secret key pair (AK/SK) for clients that sign JWTs as Kling's clients do.

How they are stored, and why:
- A key is 256 random bits (`secrets.token_urlsafe(32)`), shown once and stored only as its SHA-256
  (`hash_key`). Passwords need a slow, salted hash because people choose guessable ones; nobody can
  guess or enumerate 2^256 random keys, so a fast hash protects a key just as well, and lets a request
  find its key with one GET by the hash, which a salted hash could not.
- An SK cannot be hashed: checking an HS256 signature needs the SK itself. It is stored encrypted
  (Fernet) under a key derived from SECRET_KEY, so a copy of Redis alone (a backup, a replica, someone
  with `redis-cli`) does not give it away. A changed SECRET_KEY makes the stored SKs unreadable: their
  JWTs are refused until the client's pair is rotated (`flask clients rotate NAME --jwt`).
- Each key and AK has a lookup entry naming the tenant and admin flag it grants. Rotating gives the
  old entry a Redis TTL of the grace period, so it stops working by itself with no job to run;
  revoking deletes every entry of the client in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis
from cryptography.fernet import InvalidToken

from webhook_service.domain import tenant_limits
from webhook_service.domain.clock import now_ms
from webhook_service.domain.errors import ClientExists, ClientNotFound
from webhook_service.domain.sealing import cipher
from webhook_service.domain.tenants import Scope
from webhook_service.keys import Keys
from webhook_service.replies import texts
from webhook_service.tenant_names import NAME_RULE, valid_name

# A day: every client that starts at least once a day (a nightly batch, a daily deploy) picks up the
# new key within it, and a key rotated out stays usable for a day at most. A key known to have leaked
# is rotated with no grace (0s), or its client revoked, which ends it at once.
DEFAULT_GRACE_S = 24 * 3600
# A key that works for months after it was "rotated out" has not been rotated.
MAX_GRACE_S = 30 * 86400
KEY = "key"
ACCESS_KEY = "access-key"
# What `_new_secrets` makes. A token of another shape cannot be a managed key or AK, so it is refused
# with no round trip: garbage costs Redis nothing, and is refused as such (401) while Redis is down,
# when a real managed key gets the outage's 503, which its client retries.
_KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_ACCESS_KEY_SHAPE = re.compile(r"[0-9a-f]{32}\Z")
# The SK cipher's purpose (sealing.py): fixed for good, another would make every stored SK unreadable.
_SK_CIPHER_INFO = b"webhook_service: managed clients' JWT secret keys, v1"

log = logging.getLogger(__name__)


def hash_key(key: str) -> str:
    """How a managed key is stored and looked up: SHA-256, unsalted, because the key is 256 random bits
    (see the module's docstring)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    """New secrets, to be shown once: nothing but their hash (the key) or ciphertext (the SK) is kept."""

    name: str
    key: str = field(repr=False)
    access_key: str = ""
    secret_key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Credential:
    """A managed credential valid now: its kind (KEY or ACCESS_KEY), its stored id (a key's hash, an
    AK) and the scope it grants."""

    kind: str
    ident: str
    scope: Scope


@dataclass(frozen=True)
class ClientInfo:
    """What `flask clients list` shows of a client: never a key. Each valid key and AK is `None` while
    it is the current one, or the time (epoch ms) at which the rotated-out one stops working."""

    name: str
    admin: bool
    created_at: int
    keys: tuple[int | None, ...]
    access_keys: tuple[int | None, ...]


class ManagedClients:
    def __init__(
        self, connection: redis.Redis, keys: Keys, secret_key: str, fallbacks: Sequence[str] = ()
    ) -> None:
        self._redis = connection
        self._keys = keys
        self._cipher = cipher(secret_key, _SK_CIPHER_INFO, fallbacks)

    def exist(self) -> bool:
        """Whether any managed client exists (one EXISTS: the set of names is gone once it is empty)."""
        return bool(self._redis.exists(self._keys.clients))

    def create(self, name: str, *, admin: bool = False, with_jwt: bool = False) -> Issued:
        """A new client with a new key (and AK/SK pair); ClientExists if the name is taken, ValueError
        if it is not a tenant's name."""
        if not valid_name(name):
            raise ValueError(f"{name!r} is not a valid client name: a name is {NAME_RULE}")
        issued = _new_secrets(name, with_jwt)
        record = self._keys.client(name)

        def write(pipe: redis.client.Pipeline) -> None:
            if pipe.exists(record):
                raise ClientExists(f"client {name!r} exists already: rotate its key, or revoke it first")
            pipe.multi()
            pipe.hset(record, mapping={"admin": int(admin), "created_at": now_ms()})
            pipe.sadd(self._keys.clients, name)
            self._add(pipe, issued, admin)

        self._redis.transaction(write, record)
        log.info("client %s created (admin: %s, jwt: %s)", name, admin, with_jwt)
        return issued

    def rotate(self, name: str, *, grace_s: float = DEFAULT_GRACE_S, with_jwt: bool = False) -> Issued:
        """A new key (and with `with_jwt` a new AK/SK pair) for the client; the current one keeps working
        for `grace_s` seconds more (0: stops now). One rotated out earlier keeps its own end if that
        comes sooner: after a rotation, no old key works longer than its grace."""
        if not 0 <= grace_s <= MAX_GRACE_S:
            raise ValueError(f"the grace period must be between 0s and {MAX_GRACE_S // 86400}d")
        issued = _new_secrets(name, with_jwt)
        record, key_set, access_key_set = (
            self._keys.client(name),
            self._keys.client_keys(name),
            self._keys.client_access_keys(name),
        )

        def write(pipe: redis.client.Pipeline) -> None:
            admin = pipe.hget(record, "admin")
            if admin is None:
                raise ClientNotFound(f"no client {name!r}")
            retiring = [(key_set, self._keys.client_key(h), h) for h in texts(pipe.smembers(key_set))]
            if with_jwt:
                retiring += [
                    (access_key_set, self._keys.client_access_key(ak), ak)
                    for ak in texts(pipe.smembers(access_key_set))
                ]
            ttls = [pipe.pttl(lookup) for _, lookup, _ in retiring]
            grace_ms = int(grace_s * 1000)
            pipe.multi()
            for (members, lookup, member), ttl in zip(retiring, ttls, strict=True):
                if ttl == -2 or grace_ms == 0:  # gone by itself already, or to stop now
                    pipe.delete(lookup)
                    pipe.srem(members, member)
                elif ttl == -1 or ttl > grace_ms:  # the current one, or an old one ending later
                    pipe.pexpire(lookup, grace_ms)
            self._add(pipe, issued, admin == b"1")

        self._redis.transaction(write, record, key_set, access_key_set)
        log.info("client %s rotated (jwt: %s, grace: %ss)", name, with_jwt, grace_s)
        return issued

    def revoke(self, name: str, *, forget_limits: bool) -> None:
        """Remove the client and every key and AK/SK of it at once; with `forget_limits`, its tenant's
        weight and max_open too. ClientNotFound if there is none."""
        record, key_set, access_key_set = (
            self._keys.client(name),
            self._keys.client_keys(name),
            self._keys.client_access_keys(name),
        )

        def write(pipe: redis.client.Pipeline) -> None:
            if not pipe.exists(record):
                raise ClientNotFound(f"no client {name!r}")
            lookups = [self._keys.client_key(h) for h in texts(pipe.smembers(key_set))]
            lookups += [self._keys.client_access_key(ak) for ak in texts(pipe.smembers(access_key_set))]
            pipe.multi()
            pipe.delete(record, key_set, access_key_set, *lookups)
            pipe.srem(self._keys.clients, name)
            if forget_limits:
                tenant_limits.forget(pipe, self._keys, name)

        self._redis.transaction(write, record, key_set, access_key_set)
        log.info("client %s revoked", name)

    def names(self) -> list[str]:
        return sorted(texts(self._redis.smembers(self._keys.clients)))

    def describe(self) -> list[ClientInfo]:
        names = self.names()
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self._keys.client(name))
                pipe.smembers(self._keys.client_keys(name))
                pipe.smembers(self._keys.client_access_keys(name))
            found = pipe.execute()
        records = found[0::3]
        key_hashes = [sorted(texts(members)) for members in found[1::3]]
        access_keys = [sorted(texts(members)) for members in found[2::3]]
        with self._redis.pipeline(transaction=False) as pipe:
            for hashes, aks in zip(key_hashes, access_keys, strict=True):
                for key_hash in hashes:
                    pipe.pttl(self._keys.client_key(key_hash))
                for ak in aks:
                    pipe.pttl(self._keys.client_access_key(ak))
            ttls = iter(pipe.execute())
        now = now_ms()
        described = []
        for name, record, hashes, aks in zip(names, records, key_hashes, access_keys, strict=True):
            key_ends = _ends([next(ttls) for _ in hashes], now)
            access_key_ends = _ends([next(ttls) for _ in aks], now)
            if not record:  # revoked between the two reads
                continue
            described.append(
                ClientInfo(
                    name=name,
                    admin=record.get(b"admin") == b"1",
                    created_at=int(record.get(b"created_at", 0)),
                    keys=key_ends,
                    access_keys=access_key_ends,
                )
            )
        return described

    def by_key(self, key: str) -> Credential | None:
        """The managed key's credential, or None: one GET by the key's hash."""
        if not _KEY_SHAPE.match(key):
            return None
        key_hash = hash_key(key)
        raw = self._redis.get(self._keys.client_key(key_hash))
        return Credential(KEY, key_hash, _scope(raw)) if raw else None

    def by_access_key(self, access_key: str) -> tuple[Credential, str] | None:
        """The AK's credential and its SK (decrypted) to check a JWT's signature with, or None."""
        if not _ACCESS_KEY_SHAPE.match(access_key):
            return None
        raw = self._redis.get(self._keys.client_access_key(access_key))
        if not raw:
            return None
        credential = Credential(ACCESS_KEY, access_key, _scope(raw))
        try:
            secret_key = self._cipher.decrypt(json.loads(raw)["secret"]).decode()
        except InvalidToken:
            log.warning(
                "client %s: its JWT secret key cannot be decrypted (SECRET_KEY changed? name the earlier "
                "one in SECRET_KEY_FALLBACKS, or give it a new pair: flask clients rotate %s --jwt)",
                credential.scope.tenant,
                credential.scope.tenant,
            )
            return None
        return credential, secret_key

    def reseal(self) -> int:
        """Seal every client's JWT secret key again under the current SECRET_KEY; how many were. Each
        under WATCH: a key revoked or rotated meanwhile is never written back."""
        names = self.names()
        access_keys = [
            ak for name in names for ak in texts(self._redis.smembers(self._keys.client_access_keys(name)))
        ]
        return sum(self._reseal(self._keys.client_access_key(access_key)) for access_key in access_keys)

    def _reseal(self, key: str) -> bool:
        with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if not raw:
                        return False
                    grant = json.loads(raw)
                    grant["secret"] = self._cipher.rotate(grant["secret"].encode()).decode()
                    pipe.multi()
                    pipe.set(key, json.dumps(grant), keepttl=True)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def credentials(self) -> list[Credential]:
        """Every managed credential valid now (three round trips whatever their number): how a dashboard
        session checks that the credential it was signed in with still is."""
        names = self.names()
        if not names:
            return []
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.smembers(self._keys.client_keys(name))
                pipe.smembers(self._keys.client_access_keys(name))
            members = pipe.execute()
        wanted = [(KEY, h) for hashes in members[0::2] for h in texts(hashes)]
        wanted += [(ACCESS_KEY, ak) for aks in members[1::2] for ak in texts(aks)]
        if not wanted:
            return []
        raws = self._redis.mget([self._lookup(kind, ident) for kind, ident in wanted])
        found = zip(wanted, raws, strict=True)
        return [Credential(kind, ident, _scope(raw)) for (kind, ident), raw in found if raw]

    def _lookup(self, kind: str, ident: str) -> str:
        return self._keys.client_key(ident) if kind == KEY else self._keys.client_access_key(ident)

    def _add(self, pipe: redis.client.Pipeline, issued: Issued, admin: bool) -> None:
        grant = {"tenant": issued.name, "admin": admin}
        key_hash = hash_key(issued.key)
        pipe.set(self._keys.client_key(key_hash), json.dumps(grant))
        pipe.sadd(self._keys.client_keys(issued.name), key_hash)
        if issued.access_key:
            secret = self._cipher.encrypt(issued.secret_key.encode()).decode()
            pipe.set(self._keys.client_access_key(issued.access_key), json.dumps({**grant, "secret": secret}))
            pipe.sadd(self._keys.client_access_keys(issued.name), issued.access_key)


def _new_secrets(name: str, with_jwt: bool) -> Issued:
    """A key as long as config.py asks of every client secret and more: 43 characters, 256 bits. An AK
    is a name, sent in clear in every JWT; it is random only so that no two clients ever share one."""
    if not with_jwt:
        return Issued(name, secrets.token_urlsafe(32))
    return Issued(name, secrets.token_urlsafe(32), secrets.token_hex(16), secrets.token_urlsafe(32))


def _scope(raw: bytes | str) -> Scope:
    grant = json.loads(raw)
    return Scope(grant["tenant"], bool(grant["admin"]))


def _ends(ttls_ms: list[int], now: int) -> tuple[int | None, ...]:
    """Lookup entries' PTTLs as `ClientInfo` shows them; those already gone (-2) are left out."""
    return tuple(None if ttl == -1 else now + ttl for ttl in ttls_ms if ttl != -2)
