"""What a scrape reads from Redis, and the whole scrape: the counters (integrations/metrics.py), then
these gauges.

The gauges (open and queued tasks by resource pack, dead letters, RQ jobs by queue and state) are not
kept anywhere: they are read at scrape time, a few O(1) commands. They live in the domain because
reading them takes the domain's knowledge (the packs, the tenants' submission queues), which the
metrics below it must not have.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from webhook_service.domain.admission import waiting_by_tenant
from webhook_service.domain.task_types import Pack
from webhook_service.integrations.metrics import counted
from webhook_service.jobs import ALL_QUEUES
from webhook_service.keys import Keys


def exposition(connection: redis.Redis, keys: Keys, tenant: str | None = None) -> bytes:
    """This process's metrics (or every process's, from the files), then the gauges read from Redis;
    with `tenant`, only what that tenant may see: its own series, and none of the gauges, which count
    the whole account (every tenant's queued and open tasks, dead letters, RQ jobs)."""
    if tenant is not None:
        return counted(tenant)
    gauges = CollectorRegistry()
    gauges.register(RedisGauges(connection, keys))
    return counted(tenant) + generate_latest(gauges)


class RedisGauges(Collector):
    """Read at scrape time from Redis: one pipeline of ZCARD/LLEN, then the queues of the tenants with
    tasks waiting (domain/admission.py), never a scan."""

    def __init__(self, connection: redis.Redis, keys: Keys) -> None:
        self.redis = connection
        self.keys = keys

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("kws_redis_up", "1 when Redis answered this scrape, 0 otherwise")
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys.dead_letters)
        for pack in Pack:
            pipe.zcard(self.keys.pack(pack).slots)
        for name in ALL_QUEUES:
            pipe.llen(f"{Queue.redis_queue_namespace_prefix}{name}")
            for registry in (ScheduledJobRegistry, StartedJobRegistry, FailedJobRegistry):
                pipe.zcard(registry.key_template.format(name))
        try:
            counts = pipe.execute()
            queued = [sum(waiting_by_tenant(self.redis, self.keys.pack(pack)).values()) for pack in Pack]
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        packs = len(Pack)
        yield _gauge(
            "kws_tasks_open",
            "Tasks holding upstream slots, every resource pack's",
            sum(counts[1 : 1 + packs]),
        )
        yield _gauge("kws_tasks_queued", "Tasks waiting in the submission queues for a slot", sum(queued))
        by_pack = GaugeMetricFamily(
            "kws_pack_tasks",
            "Tasks by resource pack (video, image, tryon) and state (open upstream, queued)",
            labels=["pack", "state"],
        )
        for n, pack in enumerate(Pack):
            by_pack.add_metric([pack.value, "open"], counts[1 + n])
            by_pack.add_metric([pack.value, "queued"], queued[n])
        yield by_pack
        yield _gauge(
            "kws_dead_letters", "Notification deliveries that failed for good (replayable)", counts[0]
        )
        jobs = GaugeMetricFamily(
            "kws_rq_jobs",
            "RQ jobs by queue and state (queued, scheduled, started, failed)",
            labels=["queue", "state"],
        )
        for n, name in enumerate(ALL_QUEUES):
            for m, state in enumerate(("queued", "scheduled", "started", "failed")):
                jobs.add_metric([name, state], counts[1 + packs + n * 4 + m])
        yield jobs


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
