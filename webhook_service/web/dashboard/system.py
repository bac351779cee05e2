"""The system panel: is Redis there, are workers alive, how deep are the queues, how full are the slots.

Everything here is a handful of O(1) Redis reads, cheap enough for a page that refreshes itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import redis
from rq import Queue, Worker
from rq.worker import BaseWorker

from webhook_service.domain.admission import PackState
from webhook_service.jobs import ALL_QUEUES
from webhook_service.services import Services


@dataclass(frozen=True)
class QueueDepth:
    name: str
    waiting: int  # enqueued, not started
    running: int
    scheduled: int  # retries and delayed jobs waiting for their time
    failed: int  # RQ's failed registry (jobs that raised past their retries)


@dataclass(frozen=True)
class WorkerState:
    name: str
    state: str
    queues: list[str]
    heartbeat_age_s: float | None


@dataclass(frozen=True)
class RedisState:
    ok: bool
    detail: str  # version and memory when up, the error's name when down
    latency_ms: float | None = None


@dataclass(frozen=True)
class SystemState:
    redis: RedisState
    queues: list[QueueDepth]
    workers: list[WorkerState]
    packs: list[PackState]  # each resource pack's slots, queue and pause (domain/admission.py)


def redis_state(connection: redis.Redis) -> RedisState:
    try:
        started = time.perf_counter()
        connection.ping()
        latency_ms = (time.perf_counter() - started) * 1000
        info = connection.info()
    except redis.RedisError as error:
        return RedisState(False, type(error).__name__)
    detail = f"Redis {info.get('redis_version', '?')}, {info.get('used_memory_human', '?')} used"
    return RedisState(True, detail, latency_ms)


def _heartbeat_age(worker: BaseWorker) -> float | None:
    beat: datetime | None = worker.last_heartbeat
    return None if beat is None else max(0.0, time.time() - beat.timestamp())


def system_state(services: Services) -> SystemState:
    connection = services.redis
    health = redis_state(connection)
    if not health.ok:
        return SystemState(health, [], [], [])
    queues = []
    for name in ALL_QUEUES:
        queue = Queue(name, connection=connection)
        queues.append(
            QueueDepth(
                name,
                waiting=queue.count,
                running=queue.started_job_registry.count,
                scheduled=queue.scheduled_job_registry.count,
                failed=queue.failed_job_registry.count,
            )
        )
    workers = [
        WorkerState(w.name, str(w.get_state()), w.queue_names(), _heartbeat_age(w))
        for w in Worker.all(connection=connection)
    ]
    return SystemState(
        redis=health,
        queues=queues,
        workers=sorted(workers, key=lambda w: w.name),
        packs=services.admission.packs(),
    )
