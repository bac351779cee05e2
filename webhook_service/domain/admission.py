"""Who may go upstream, and when: the submission queues and the concurrency slots.

Kling limits how many tasks an account has open at once (1303 past it). The service keeps its own
count below `KLING_MAX_CONCURRENCY`, so a burst of a thousand requests waits here instead of being
turned away upstream. The account is shared by tenants (domain/tenants.py), and one tenant's backlog
must not hold up everyone else's work: each tenant has its own queue, in arrival order, and a freed
slot goes to the tenants with work waiting by weighted round-robin.

The round-robin is stride scheduling. Each tenant with work waiting has a *pass*; the slot goes to
the tenant with the smallest pass that is under its own `max_open`, which then moves on by its stride,
1/weight: a tenant of weight 3 gets three turns for another's one. The *virtual time* is the largest
pass a turn was taken at; it never moves back.

A tenant that joins after being idle gets a bounded credit, as Linux's CFS gives a task that wakes
from sleep: its pass is max(its pass when it last left, virtual time - credit), the credit being
`CREDIT_TURNOVERS` turnovers of the pack's slots (2 x the pack's limit turns at its own stride). So a
quiet tenant's burst of up to that many tasks goes ahead of another's backlog, and never more however
long it was quiet: the backlog's tenant waits two turnovers at most for it. Its pass when it left
(`submit_passes`) keeps a tenant that comes back at once from renewing the credit, and from skipping
turns. Tenants that join while no other takes turns start level, at the virtual time (a credit would
only reorder them against their weights). Passes stay at 0 or above: should a credit reach below 0,
the virtual time and every pass move up together, which changes no order.

A tenant at its `max_open` is passed over, never waited for (a slot stays free only when no tenant
that may use it has work waiting), and falls in at the virtual time when another takes the turn: it
banks no turns, and keeps no credit, while held back.

Everything is decided in one Lua script (`take_next`, in domain/admission_scripts.py), so concurrent
dispatchers never both take a slot. It looks only at the tenants with work waiting, and counts each
tenant's open tasks from every pack's slots (at most each pack's limit of them), and only when a
waiting tenant has a `max_open`. A slot's tenant (that of the queue it was taken from) is written
beside it when it is taken (`slot_tenants`, for tenants other than the default), so `release` stays
plain deletions that any transaction, or the store's compare-and-set script, can carry.

Enqueueing is two plain writes too (the task into its tenant's queue; the tenant into
`submit_tenants` with a negative score, "joined since the last turn") so it rides in the transaction
that records the task; the next `take_next` gives a joined tenant its pass. `put_back` (Kling said
not now, or the sender died) returns the task to its place in its tenant's queue and gives the
tenant back the turn it spent.

The default tenant's queue is `submit_queue`, where every task waited before tenants had queues of
their own: what waited there at an upgrade is still sent, in the default tenant's turns (another
tenant's task among them counts as the default tenant's until it is done).

Kling counts open tasks per resource pack (video, image, try-on), each with its own limit, and an
image task holds one slot per image it asks for. So each pack is a `Pool` of its own (its queues,
slots, round-robin and pause, under its own keys): a full video pack never holds back an image task,
and a 1303 for an image task pauses the image pack only. A task that needs several slots waits at the
head of its tenant's queue until that many are free (at most the pack's limit: a task asking for more
takes the whole pack); nothing of another tenant jumps ahead of it meanwhile, so it is never starved
by single-slot tasks. A tenant's `max_open` is the most tasks it has upstream at once in all the packs
together (a task counts once, whatever slots it holds): a pack's take script reads the other packs'
slots too, and a finished task of a tenant with a `max_open` wakes a dispatch if any pack has a task
waiting.

Keys (keys.py, one set per pack): `submit_queue`, `tenant_submit_queue(tenant)`, `submit_tenants`,
`submit_passes`, `submit_vtime`, `slots`, `slot_tenants`, `slot_taken_at`, `queue_units`, `slot_units`,
`pause_until`, `pause_level`; read, shared by the packs: `tenant_weights`, `tenant_max_open`, and the
other packs' `slots` and `slot_tenants`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis
from redis.client import Pipeline

from webhook_service.domain.admission_scripts import PUT_BACK, TAKE_NEXT
from webhook_service.domain.clock import now_ms
from webhook_service.domain.task_types import Pack
from webhook_service.domain.tenants import DEFAULT_TENANT, tenant_of
from webhook_service.keys import Keys
from webhook_service.replies import text, texts

PAUSE_BASE_S = 1.0  # Kling asks for at least 1 s after 1303
PAUSE_CAP_S = 60.0
JOINING = -1  # a tenant's score in `submit_tenants` until the next turn gives it a pass
CREDIT_TURNOVERS = 2  # a tenant joining after being idle may take this many turnovers' slots first


class Pool:
    """One resource pack's queues and slots."""

    def __init__(self, connection: redis.Redis, keys: Keys, pack: Pack, max_concurrency: int) -> None:
        self.redis = connection
        self.shared = keys  # the tenants' weights and limits
        self.keys = keys.pack(pack)
        self.pack = pack
        self.max_concurrency = max_concurrency
        # A tenant's max_open counts its tasks in every pack: the take script reads the others' slots.
        self._other_slots = [
            key
            for other in Pack
            if other != pack
            for key in (keys.pack(other).slots, keys.pack(other).slot_tenants)
        ]
        self._take_next = connection.register_script(TAKE_NEXT)
        self._put_back = connection.register_script(PUT_BACK)

    def enqueue(self, pipe: Pipeline, external_task_id: str, tenant: str, units: int) -> None:
        pipe.zadd(queue_key(self.keys, tenant), {external_task_id: time.time_ns() // 1000}, nx=True)
        pipe.zadd(self.keys.submit_tenants, {tenant: JOINING}, nx=True)
        if units > 1:
            pipe.hset(self.keys.queue_units, external_task_id, units)

    def take_next(self) -> str | None:
        k = self.keys
        taken = self._take_next(
            keys=[
                k.submit_tenants,
                k.slots,
                k.pause_until,
                k.slot_taken_at,
                k.slot_tenants,
                self.shared.tenant_weights,
                self.shared.tenant_max_open,
                k.submit_passes,
                k.submit_vtime,
                k.submit_queue,
                k.queue_units,
                k.slot_units,
                *self._other_slots,
            ],
            args=[DEFAULT_TENANT, self._queue_prefix, self.max_concurrency, now_ms(), CREDIT_TURNOVERS],
        )
        return text(taken) if taken else None

    def put_back(self, external_task_id: str) -> None:
        k = self.keys
        self._put_back(
            keys=[
                k.slots,
                k.slot_taken_at,
                k.slot_tenants,
                k.submit_tenants,
                k.submit_passes,
                self.shared.tenant_weights,
                k.submit_queue,
                k.slot_units,
            ],
            args=[DEFAULT_TENANT, self._queue_prefix, external_task_id, tenant_of(external_task_id)],
        )

    def release(self, pipe: Pipeline, external_task_id: str) -> None:
        pipe.zrem(self.keys.slots, external_task_id)
        pipe.hdel(self.keys.slot_taken_at, external_task_id)
        pipe.hdel(self.keys.slot_tenants, external_task_id)
        pipe.hdel(self.keys.queue_units, external_task_id)
        pipe.hdel(self.keys.slot_units, external_task_id)

    def pause(self) -> float:
        level = int(self.redis.incr(self.keys.pause_level))
        delay = min(PAUSE_CAP_S, PAUSE_BASE_S * 2.0 ** (level - 1)) * random.uniform(1.0, 1.5)
        self.redis.set(self.keys.pause_until, now_ms() + int(delay * 1000))
        return delay

    def resume(self) -> None:
        if self.redis.exists(self.keys.pause_level):
            self.redis.delete(self.keys.pause_level, self.keys.pause_until)

    def paused_for_s(self) -> float:
        until = int(self.redis.get(self.keys.pause_until) or 0)
        return max(0.0, (until - now_ms()) / 1000.0)

    def slots_used(self) -> int:
        """Slots held, counting an image task's `n`."""
        units = [int(u) for u in self.redis.hvals(self.keys.slot_units)]
        return int(self.redis.zcard(self.keys.slots)) + sum(units) - len(units)

    @property
    def _queue_prefix(self) -> str:
        return self.keys.tenant_submit_queue("")


@dataclass(frozen=True)
class PackState:
    """One pack's slots, for the dashboard and metrics."""

    pack: Pack
    open_tasks: int
    slots_used: int
    max_concurrency: int
    waiting: int
    paused_for_s: float


class Admission:
    """Every pack's pool. A task's pack comes from its type (domain/task_types.py); calls that only
    delete (`sent`, `release`) need no pack, so any transaction can carry them for any task."""

    def __init__(self, connection: redis.Redis, keys: Keys, limits: Mapping[Pack, int]) -> None:
        self.redis = connection
        self.keys = keys
        self.pools = {pack: Pool(connection, keys, pack, limits[pack]) for pack in Pack}

    def enqueue(
        self,
        pipe: Pipeline,
        external_task_id: str,
        tenant: str = DEFAULT_TENANT,
        *,
        pack: Pack = Pack.VIDEO,
        units: int = 1,
    ) -> None:
        self.pools[pack].enqueue(pipe, external_task_id, tenant, units)

    def take_next(self, pack: Pack = Pack.VIDEO) -> str | None:
        """The pack's next task to send upstream, now holding its slots; None when the pack is paused
        or full, or when no tenant that may send more has work waiting in it."""
        return self.pools[pack].take_next()

    def put_back(self, external_task_id: str, pack: Pack = Pack.VIDEO) -> None:
        """Free the task's slots and return it to its tenant's queue in its arrival place (before later
        ones); the tenant gets back the turn it spent on it."""
        self.pools[pack].put_back(external_task_id)

    def sent(self, pipe: Pipeline, external_task_id: str) -> None:
        """Kling has the task (or said no): it is no longer in the hands of a sender."""
        for pool in self.pools.values():
            pipe.hdel(pool.keys.slot_taken_at, external_task_id)

    def abandoned(self, older_than_s: float) -> list[str]:
        """Tasks taken to be sent longer ago than that and never settled: their sender died."""
        cutoff = now_ms() - older_than_s * 1000
        return [
            text(k)
            for pool in self.pools.values()
            for k, at in self.redis.hgetall(pool.keys.slot_taken_at).items()
            if int(at) < cutoff
        ]

    def release(self, pipe: Pipeline, external_task_id: str) -> None:
        """The task is final: free its slots, whichever pack it was in."""
        for pool in self.pools.values():
            pool.release(pipe, external_task_id)

    def pause(self, pack: Pack = Pack.VIDEO) -> float:
        """Kling said slow down (1302/1303/5001) for a task of this pack: wait longer after each
        consecutive refusal. The other packs go on."""
        return self.pools[pack].pause()

    def resume(self, pack: Pack = Pack.VIDEO) -> None:
        self.pools[pack].resume()

    def paused_for_s(self, pack: Pack = Pack.VIDEO) -> float:
        return self.pools[pack].paused_for_s()

    def next_wake_s(self) -> float:
        """How long until the first paused pack with work waiting may send again (0: none is)."""
        return min(
            (
                paused
                for pack, pool in self.pools.items()
                if (paused := pool.paused_for_s()) > 0 and self.waiting(pack)
            ),
            default=0.0,
        )

    def has_waiting(self, pack: Pack, tenant: str = DEFAULT_TENANT) -> bool:
        """Whether a task may be waiting that a task of `tenant` freeing its slots in `pack` lets go:
        one in that pack, or in any pack when the tenant has a max_open (which counts its tasks in
        every pack). One round trip, for deciding to wake a dispatch; a tenant whose queue has just
        emptied may still be listed: a wake-up too many, never one too few."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hexists(self.keys.tenant_max_open, tenant)
        for pool in self.pools.values():
            pipe.exists(pool.keys.submit_queue)
            pipe.zcard(pool.keys.submit_tenants)
        capped, *counts = pipe.execute()
        waiting = {p: bool(counts[2 * n] or counts[2 * n + 1]) for n, p in enumerate(self.pools)}
        return waiting[pack] or (bool(capped) and any(waiting.values()))

    def waiting(self, pack: Pack | None = None) -> int:
        """Tasks waiting for a slot, every tenant's (in one pack, or in all)."""
        packs = list(Pack) if pack is None else [pack]
        return sum(sum(waiting_by_tenant(self.redis, self.keys.pack(p)).values()) for p in packs)

    def waiting_by_tenant(self) -> dict[str, int]:
        """Tasks waiting for a slot by tenant, every pack's."""
        total: dict[str, int] = {}
        for pack in Pack:
            for tenant, n in waiting_by_tenant(self.redis, self.keys.pack(pack)).items():
                total[tenant] = total.get(tenant, 0) + n
        return dict(sorted(total.items()))

    def in_flight(self, pack: Pack | None = None) -> int:
        """Tasks holding slots (in one pack, or in all)."""
        pools = self.pools.values() if pack is None else [self.pools[pack]]
        return sum(int(self.redis.zcard(pool.keys.slots)) for pool in pools)

    def packs(self) -> list[PackState]:
        return [
            PackState(
                pack,
                open_tasks=self.in_flight(pack),
                slots_used=pool.slots_used(),
                max_concurrency=pool.max_concurrency,
                waiting=self.waiting(pack),
                paused_for_s=pool.paused_for_s(),
            )
            for pack, pool in self.pools.items()
        ]


def queue_key(keys: Keys, tenant: str) -> str:
    """A tenant's queue: the default tenant's is the one every task waited in before tenants."""
    return keys.submit_queue if tenant == DEFAULT_TENANT else keys.tenant_submit_queue(tenant)


def waiting_by_tenant(connection: redis.Redis, keys: Keys) -> dict[str, int]:
    """Tasks waiting for a slot, by tenant (those with none left out)."""
    tenants = {DEFAULT_TENANT, *texts(connection.zrange(keys.submit_tenants, 0, -1))}
    pipe = connection.pipeline(transaction=False)
    for tenant in tenants:
        pipe.zcard(queue_key(keys, tenant))
    counts = dict(zip(tenants, (int(n) for n in pipe.execute()), strict=True))
    return {tenant: n for tenant, n in sorted(counts.items()) if n}
