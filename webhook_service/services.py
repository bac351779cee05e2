"""The long-lived objects a process needs, built once from the settings and handed on explicitly.

The web app builds one in `create_app` (web/app.py), each RQ work horse one for its job
(workers/horse.py), the CLI uses the app's. Domain functions take it as their first argument, so a
test builds one against its own Redis and calls them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from webhook_service.config import Settings
from webhook_service.domain.admission import Admission
from webhook_service.domain.clients import ManagedClients
from webhook_service.domain.open_tasks import OpenTasks
from webhook_service.domain.store import TaskStore
from webhook_service.domain.task_types import Pack
from webhook_service.integrations.kling import ClientPerProcess
from webhook_service.integrations.redis_config import DurabilityReading
from webhook_service.integrations.storage import Storage, storage_from_url
from webhook_service.keys import Keys
from webhook_service.notify.deliveries import DeliveryStore
from webhook_service.notify.endpoints import EndpointStore
from webhook_service.notify.event_log import EventLog


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    keys: Keys
    store: TaskStore
    deliveries: DeliveryStore
    endpoints: EndpointStore
    events: EventLog
    admission: Admission
    clients: ManagedClients
    open_tasks: OpenTasks
    kling: ClientPerProcess
    storage: Storage
    durability: DurabilityReading

    @classmethod
    def build(cls, settings: Settings, *, keys: Keys | None = None) -> Services:
        keys = keys or Keys()
        connection = redis_connection(settings)
        storage = storage_from_url(
            settings.archive_url,
            s3_endpoint_url=settings.s3_endpoint_url or None,
            spool_dir=Path(settings.archive_spool_dir),
        )
        return cls(
            settings=settings,
            redis=connection,
            keys=keys,
            store=TaskStore(connection, keys),
            deliveries=DeliveryStore(connection, keys),
            endpoints=EndpointStore(connection, keys, settings.secret_key, settings.secret_key_fallbacks),
            events=EventLog(connection, keys),
            admission=Admission(
                connection,
                keys,
                {
                    Pack.VIDEO: settings.kling_max_concurrency,
                    Pack.IMAGE: settings.kling_max_concurrency_image,
                    Pack.TRYON: settings.kling_max_concurrency_tryon,
                },
            ),
            clients=ManagedClients(connection, keys, settings.secret_key, settings.secret_key_fallbacks),
            open_tasks=OpenTasks(connection, keys),
            kling=ClientPerProcess(settings),
            storage=storage,
            durability=DurabilityReading(connection),
        )


# How long a command waits for Redis to come back: retried on a dropped connection (and, through
# Sentinel, on a former primary that now answers read-only), each time after asking the sentinels
# where the primary is. Web requests and the CLI wait little: two more tries, 50 then 100 ms apart (a
# new connection's own tries nest inside, so well under two seconds in all while there is no primary),
# then a callback is answered 503 (Kling documents no retry: the reconciliation polls the open task).
# A timeout is not retried: the command may have run, and each retry would wait the whole read timeout
# again. Workers wait much longer (workers/__main__.py).
BRIEF_PATIENCE = Retry(
    ExponentialBackoff(cap=0.1, base=0.05), retries=2, supported_errors=(redis.ConnectionError,)
)
# Sentinels answer from memory: one that takes longer than this is skipped for the next.
SENTINEL_TIMEOUT_S = 0.5


class PrimaryFollowingConnection(SentinelManagedConnection):
    """A connection to the primary the sentinels name now, at every (re)connection.

    redis-py's own asks the sentinels only when the pool hands out a new connection: a connection that
    is dropped and re-opened by the retry of the command it was running (a blocking dequeue when the
    old primary is demoted and Sentinel closes its clients) goes back to the address it had, is told
    READONLY, and retries there until its patience runs out. A worker waiting for jobs then sat on the
    demoted primary for minutes while the queue filled up on the new one.

    It is also dropped when a read fails, as a direct connection is. redis-py's own keeps it
    (`disconnect_on_error=False`, redis-py PR #4292): after a read timeout (a network partition, a slow
    primary) it went back to the pool with its reply still on the way, and every later command on it
    read the reply of the one before: a GET answered with a list, one task's record for another's.
    """

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()  # type: ignore[no-untyped-call]  # redis-py's, untyped

    def read_response(self, *args: Any, disconnect_on_error: bool | None = True, **kwargs: Any) -> Any:
        return super().read_response(*args, disconnect_on_error=disconnect_on_error, **kwargs)


def redis_connection(
    settings: Settings, *, read_timeout_s: float = 5.0, patience: Retry = BRIEF_PATIENCE
) -> redis.Redis:
    """The one way the service connects to Redis: bounded waits, and a dead connection noticed. A command
    that waits in Redis (XREAD BLOCK) needs a connection of its own whose `read_timeout_s` outlasts it.

    With REDIS_SENTINELS, the primary is the one the sentinels name, asked again whenever a connection
    is made: after a failover each process finds the new primary by itself (see docs/operations.md)."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 2,
        "socket_timeout": read_timeout_s,
        "health_check_interval": 30,
        "retry": patience,
        "password": settings.redis_password or None,
    }
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    sentinels = Sentinel(
        settings.redis_sentinels,
        sentinel_kwargs={
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "password": settings.redis_sentinel_password or None,
        },
    )
    database = int(urlsplit(settings.redis_url).path.strip("/") or 0)
    primary: redis.Redis = sentinels.master_for(
        settings.redis_sentinel_master, db=database, connection_class=PrimaryFollowingConnection, **options
    )
    return primary
