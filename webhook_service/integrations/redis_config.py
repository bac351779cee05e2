"""What the Redis under the service promises to keep, read from its own configuration.

Every task, its callback history, the submission queue and every RQ job live in Redis. A Redis that
evicts keys under memory pressure deletes them without a word; one that keeps nothing on disk loses
them all when it restarts. The web and the worker read this when they start (an evicting Redis stops
them, one that keeps nothing is a warning, or a refusal with REQUIRE_DURABLE_REDIS) and `/readyz`
and the dashboard report it. Managed Redis often renames or disables CONFIG: what it promises is then
unknown, and reported as such rather than refused, since its provider's settings hold the answer.
See docs/operations.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import redis

from webhook_service.replies import hash_fields

log = logging.getLogger(__name__)

NO_EVICTION = "noeviction"
READING_MAX_AGE_S = 30.0
_PARAMETERS = ("appendonly", "appendfsync", "save", "maxmemory-policy")


class RedisUnfit(Exception):
    """The Redis at REDIS_URL would lose the service's data; the message says which setting to change."""


@dataclass(frozen=True)
class RedisDurability:
    """Redis's persistence and eviction settings; `known` is False when Redis refused CONFIG."""

    known: bool
    appendonly: bool = False
    appendfsync: str = ""
    save: str = ""  # RDB snapshot rules ("3600 1 300 100"), empty when snapshots are off
    maxmemory_policy: str = ""

    @property
    def durable(self) -> bool | None:
        """True when Redis writes to disk (AOF or RDB snapshots), None when it would not say."""
        return (self.appendonly or bool(self.save)) if self.known else None

    @property
    def evicting(self) -> bool:
        """Any policy but noeviction, `volatile-*` included: those evict the keys that carry a TTL,
        and a TTL here means "keep until then", not "drop when memory is short": the lock that keeps
        reconciliation to one pass at a time, the keys by which a worker is known to be alive, the
        records of RQ's jobs."""
        return self.known and self.maxmemory_policy != NO_EVICTION

    @property
    def persistence(self) -> str:
        if not self.known:
            return "unknown"
        kinds = [f"aof (appendfsync {self.appendfsync})"] if self.appendonly else []
        kinds += [f"rdb (save {self.save})"] if self.save else []
        return " + ".join(kinds) or "none"

    def as_dict(self) -> dict[str, Any]:
        """What /readyz shows."""
        return {
            "durable": self.durable,
            "persistence": self.persistence,
            "maxmemory_policy": self.maxmemory_policy if self.known else None,
        }


UNKNOWN = RedisDurability(known=False)


def read_durability(connection: redis.Redis) -> RedisDurability:
    """One round trip. A Redis that refuses CONFIG gives UNKNOWN; one that does not answer raises."""
    pipe = connection.pipeline(transaction=False)
    for parameter in _PARAMETERS:
        pipe.config_get(parameter)
    try:
        replies = pipe.execute()
    except redis.ResponseError:  # renamed or disabled (unknown command), or not allowed (NOPERM)
        return UNKNOWN
    values = {name: value for reply in replies for name, value in hash_fields(reply).items()}
    return RedisDurability(
        known=True,
        appendonly=values.get("appendonly") == "yes",
        appendfsync=values.get("appendfsync", ""),
        save=values.get("save", "").strip(),
        maxmemory_policy=values.get("maxmemory-policy", ""),
    )


class DurabilityReading:
    """The latest reading, taken again when older than READING_MAX_AGE_S.

    /readyz is polled every few seconds by every load balancer in every web process, and the
    dashboard's pages refresh themselves; Redis's configuration changes only when someone changes it.
    Half a minute late is soon enough to report that, and spares a round trip on nearly every probe.
    """

    def __init__(self, connection: redis.Redis, max_age_s: float = READING_MAX_AGE_S) -> None:
        self._connection = connection
        self._max_age_s = max_age_s
        self._taken: tuple[float, RedisDurability] | None = None

    def current(self) -> RedisDurability:
        """Raises redis.RedisError when a fresh reading is due and Redis does not answer."""
        taken = self._taken
        if taken is not None and time.monotonic() - taken[0] < self._max_age_s:
            return taken[1]
        reading = read_durability(self._connection)
        self._taken = (time.monotonic(), reading)
        return reading


def check_at_start(connection: redis.Redis, *, require_durable: bool) -> RedisDurability | None:
    """Refuse a Redis that would lose data (RedisUnfit), warn about one that may; None: no answer.

    A Redis that does not answer yet is not refused: the process starts as it always has, and
    /readyz reports the reading once Redis answers.
    """
    try:
        reading = read_durability(connection)
    except redis.RedisError as error:
        log.warning(
            "Redis did not answer (%s): its persistence and eviction policy were not checked; "
            "/readyz reports them once it answers",
            type(error).__name__,
        )
        return None
    if unfit := unfit_reason(reading, require_durable=require_durable):
        raise RedisUnfit(unfit)
    if reading.durable is None:
        log.warning(
            "Redis refused CONFIG: whether it persists its data and which maxmemory-policy it uses are "
            "unknown. Check with its provider that it persists (AOF or snapshots) and uses "
            "maxmemory-policy noeviction; see docs/operations.md"
        )
    elif not reading.durable:
        log.warning(
            "%s: a restart of Redis loses every task, its history and every queued job. Turn on AOF "
            "(appendonly yes, appendfsync everysec); REQUIRE_DURABLE_REDIS=true makes this a refusal. "
            "See docs/operations.md",
            _KEEPS_NOTHING,
        )
    return reading


_KEEPS_NOTHING = 'Redis keeps nothing on disk (appendonly no, save "")'


def unfit_reason(reading: RedisDurability, *, require_durable: bool) -> str | None:
    """Why the service must not run on this Redis (None: it may): the refusal at start, and /readyz's
    answer when the settings change under a running service (CONFIG SET, a failover to a replica
    configured otherwise)."""
    if reading.evicting:
        return (
            f"Redis's maxmemory-policy is {reading.maxmemory_policy}: when memory runs short it would "
            "silently delete tasks and queued jobs. Set `maxmemory-policy noeviction` (redis.conf, or "
            "CONFIG SET maxmemory-policy noeviction); see docs/operations.md"
        )
    if require_durable and reading.durable is False:
        return (
            f"{_KEEPS_NOTHING} and REQUIRE_DURABLE_REDIS is true. Turn on AOF (`appendonly yes`, "
            "`appendfsync everysec`) or RDB snapshots (`save 60 1000`); see docs/operations.md"
        )
    return None
