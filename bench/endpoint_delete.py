"""Benchmark: how long deleting an endpoint takes with many deliveries pending for it.

    .venv/bin/python bench/endpoint_delete.py [--pending 20000] [--sentinel]

An endpoint that fails for days has a delivery pending for each event of its tenant's tasks since,
until it is disabled (ENDPOINT_DISABLE_AFTER_S, 5 days); `DELETE /v1/endpoints/<id>` makes every one a
dead letter within the request (notify/endpoint_deletion.py), which gunicorn ends after 60 s. On a
private redis-server (or with `--sentinel` a Sentinel group of the run's own): `--pending` deliveries
recorded for an endpoint, then settled by the store's `give_up_pending`, GIVE_UP_BATCH to a
transaction; the baseline, in the same run on as many deliveries recorded again, settles them one
transaction each, as the store did until 2026-12-05. Prints both and their ratio; exits 1 when the
batches are not MIN_SPEEDUP times faster, or a delivery is left pending.

On loopback a round trip to Redis costs some 50 µs; between hosts several times more, and the
baseline pays a few of them a delivery while a batch pays a few per GIVE_UP_BATCH deliveries.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Stack, add_redis_option, code_version, conditions, free_port, service_env
from webhook_service.config import Settings
from webhook_service.notify.deliveries import GIVE_UP_BATCH
from webhook_service.notify.records import ENDPOINT_DELETED, Delivery, DeliveryStatus
from webhook_service.notify.routing import SinkKind
from webhook_service.services import Services

MIN_SPEEDUP = 3.0
TENANT = "default"


def settle(svc: Services, pending: int, batch: int, name: str) -> float:
    """Record `pending` deliveries for a new endpoint; seconds to settle them, `batch` a transaction."""
    endpoint, _ = svc.endpoints.create(TENANT, {"url": f"https://{name}.example.com/hook"})
    for n in range(pending):
        delivery = Delivery(
            id=f"dl_{name}_{n}",
            event_id=f"ev_{name}_{n}",
            event_type="task.archived",
            external_task_id=f"{name}-{n}",
            sink=SinkKind.WEBHOOK,
            target=endpoint.url,
            client=True,
            tenant=TENANT,
            endpoint=endpoint.id,
        )
        svc.deliveries.create(delivery)
    started = time.perf_counter()
    settled = svc.deliveries.give_up_pending(endpoint.id, ENDPOINT_DELETED, batch=batch)
    took = time.perf_counter() - started
    left = svc.deliveries.list(DeliveryStatus.PENDING, endpoint=endpoint.id, limit=1)
    if len(settled) != pending or left:
        raise SystemExit(f"{name}: {len(settled)} of {pending} settled, {len(left)} left pending")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pending", type=int, default=20000)
    add_redis_option(parser)
    args = parser.parse_args()
    print(conditions())
    print(f"code:           {code_version()}")
    with tempfile.TemporaryDirectory(prefix="bench-endpoint-delete-") as tmp, Stack(Path(tmp)) as stack:
        env = service_env(Path(tmp), stack.redis(sentinel=args.sentinel), free_port())
        svc = Services.build(Settings.from_env(env))
        one_by_one = settle(svc, args.pending, 1, "baseline")
        batched = settle(svc, args.pending, GIVE_UP_BATCH, "batched")
    print(conditions())
    for name, took in (("one transaction a delivery (baseline)", one_by_one), ("batched", batched)):
        print(f"{name}: {args.pending} settled in {took:.2f} s, {took / args.pending * 1e6:.0f} µs each")
    speedup = one_by_one / batched
    print(f"batched against one by one: {speedup:.1f} times faster (goal at least {MIN_SPEEDUP:g})")
    return 0 if speedup >= MIN_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
