"""The long-lived objects a process needs, built once from the settings and handed on explicitly.

The web app builds one in `create_app` (web/app.py), each RQ work horse one for its job
(workers/horse.py), the CLI uses the app's. Domain functions take it as their first argument, so a
test builds one against its own Redis and calls them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

from webhook_service.config import Settings
from webhook_service.domain.admission import Admission
from webhook_service.domain.clients import ManagedClients
from webhook_service.domain.open_tasks import OpenTasks
from webhook_service.domain.store import TaskStore
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
            endpoints=EndpointStore(connection, keys, settings.secret_key),
            events=EventLog(connection, keys),
            admission=Admission(connection, keys, settings.kling_max_concurrency),
            clients=ManagedClients(connection, keys, settings.secret_key),
            open_tasks=OpenTasks(connection, keys),
            kling=ClientPerProcess(settings),
            storage=storage,
            durability=DurabilityReading(connection),
        )


def redis_connection(settings: Settings, *, read_timeout_s: float = 5.0) -> redis.Redis:
    """The one way the service connects to Redis: bounded waits, and a dead connection noticed. A command
    that waits in Redis (XREAD BLOCK) needs a connection of its own whose `read_timeout_s` outlasts it."""
    return redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=read_timeout_s, health_check_interval=30
    )
