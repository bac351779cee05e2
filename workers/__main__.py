"""`python -m workers`: one RQ worker for all of the service's queues, with the scheduler on; it runs
each job in its own process, or those of WORKER_FORK_QUEUES (none by default) in a forked work horse
(workers/horse.py).

The scheduler is what turns RQ's retry intervals into delays; without it they are ignored. It refuses
to start on a Redis that would evict the jobs (see integrations/redis_config.py).
"""

from __future__ import annotations

import argparse
import sys

from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from webhook_service.config import ConfigError, Settings
from webhook_service.integrations import logs, metrics
from webhook_service.integrations.redis_config import RedisUnfit, check_at_start
from webhook_service.jobs import (
    ALL_QUEUES,
    JOB_MONITORING_INTERVAL_S,
    MAINTENANCE_INTERVAL_S,
    fork_queues,
    periodic_work,
)
from webhook_service.services import redis_connection
from workers.horse import ServiceWorker

# A Redis restart (a crash, a failover, an append-only file being loaded) must not end the worker: it
# would lose its place in the middle of a job, and under honcho one process that exits stops them all.
# Each of its commands, and those of RQ's scheduler process (which copies its connection, Sentinel's
# included), waits for Redis to answer again, retrying at most 2 s apart for about two minutes, before
# giving up; through Sentinel each try asks the sentinels for the primary, so a failover is followed.
REDIS_PATIENCE = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    args = parser.parse_args()
    try:
        settings = Settings.from_env()
        forked_queues = fork_queues(settings)
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    logs.configure(settings)
    metrics.remove_files_of_dead_processes()
    connection = redis_connection(settings, patience=REDIS_PATIENCE)
    try:
        check_at_start(connection, require_durable=settings.require_durable_redis)
    except RedisUnfit as unfit:
        print(f"refusing to start: {unfit}", file=sys.stderr)
        return 2
    worker = ServiceWorker(
        list(ALL_QUEUES),
        connection=connection,
        maintenance_interval=MAINTENANCE_INTERVAL_S,
        job_monitoring_interval=JOB_MONITORING_INTERVAL_S,
        settings=settings,
        forked_queues=forked_queues,
        # Each chain of ticks is started by the first check, and started again whenever it goes missing.
        periodic=() if args.burst else periodic_work(settings).values(),
    )
    worker.work(with_scheduler=True, burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
