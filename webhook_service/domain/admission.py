"""Who may go upstream, and when: the submission queues and the concurrency slots.

Kling limits how many tasks an account has open at once (1303 past it). The service keeps its own
count below `KLING_MAX_CONCURRENCY`, so a burst of a thousand requests waits here instead of being
turned away upstream. The account is shared by tenants (domain/tenants.py), and one tenant's backlog
must not hold up everyone else's work: each tenant has its own queue, in arrival order, and a freed
slot goes to the tenants with work waiting by weighted round-robin.

The round-robin is stride scheduling. Each tenant with work waiting has a *pass*; the slot goes to
the tenant with the smallest pass that is under its own `max_open`, which then moves on by its stride,
1/weight: a tenant of weight 3 gets three turns for another's one. The *virtual time* is the pass of
the last turn taken, and a pass behind it counts as it: a tenant that was idle, or held back by its
`max_open` while others took turns, gets its next turn at once but no burst of the turns it did not
use. A tenant whose queue empties keeps its pass (`submit_passes`), so one that sends a task each
time its last is taken skips no turns. A tenant at its limit is passed over, never waited for: a
slot stays free only when no tenant that may use it has work waiting.

Everything is decided in one Lua script (`take_next`), so concurrent dispatchers never both take a
slot. It looks only at the tenants with work waiting, and counts each tenant's open tasks from the
slots (at most `max_concurrency` of them), and only when a waiting tenant has a `max_open`. A slot's
tenant (that of the queue it was taken from) is written beside it when it is taken (`slot_tenants`,
for tenants other than the default), so `release` stays plain deletions that any transaction, or the
store's compare-and-set script, can carry. The script builds a tenant's queue key from its name: the
keys of the tenants it has just read cannot be declared in advance, which a single Redis (what the
service runs on, not a cluster) allows.

Enqueueing is two plain writes too (the task into its tenant's queue; the tenant into
`submit_tenants` with a negative score, "joined since the last turn") so it rides in the transaction
that records the task; the next `take_next` gives a joined tenant its pass. `put_back` (Kling said
not now, or the sender died) returns the task to its place in its tenant's queue and gives the
tenant back the turn it spent.

The default tenant's queue is `submit_queue`, where every task waited before tenants had queues of
their own: what waited there at an upgrade is still sent, in the default tenant's turns (another
tenant's task among them counts as the default tenant's until it is done).

Keys (keys.py): `submit_queue`, `tenant_submit_queue(tenant)`, `submit_tenants`, `submit_passes`,
`submit_vtime`, `slots`, `slot_tenants`, `slot_taken_at`, `pause_until`, `pause_level`; read:
`tenant_weights`, `tenant_max_open`.
"""

from __future__ import annotations

import random
import time

import redis
from redis.client import Pipeline

from webhook_service.domain.clock import now_ms
from webhook_service.domain.tenants import DEFAULT_TENANT, tenant_of
from webhook_service.keys import Keys
from webhook_service.replies import text, texts

PAUSE_BASE_S = 1.0  # Kling asks for at least 1 s after 1303
PAUSE_CAP_S = 60.0
JOINING = -1  # a tenant's score in `submit_tenants` until the next turn gives it a pass

# Shared by the scripts: ARGV[1] is the default tenant, ARGV[2] what a tenant's name follows in its
# queue's key. Numbers are written with all their digits (Lua's own conversion keeps 14).
_HELPERS = """
local function queue_of(tenant, default_queue)
  if tenant == ARGV[1] then return default_queue end
  return ARGV[2] .. tenant
end
local function stride_of(tenant, weights)
  local weight = tonumber(redis.call('HGET', weights, tenant))
  if weight == nil or weight <= 0 then weight = 1 end
  return 1 / weight
end
local function number(value) return string.format('%.17g', value) end
"""

# KEYS: tenants, slots, pause_until, slot_taken_at, slot_tenants, weights, max_open, passes, vtime,
# the default tenant's queue. ARGV: default tenant, queue key prefix, max_concurrency, now (ms).
# Unless paused or full: the next tenant's oldest task, moved into a slot.
_TAKE_NEXT = (
    _HELPERS
    + """
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > tonumber(ARGV[4]) then return false end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return false end
if redis.call('EXISTS', KEYS[10]) == 1 then  -- also what waited there before tenants had queues
  redis.call('ZADD', KEYS[1], 'NX', '-1', ARGV[1])
end
for _, tenant in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(0')) do
  redis.call('ZADD', KEYS[1], redis.call('HGET', KEYS[8], tenant) or '0', tenant)
  redis.call('HDEL', KEYS[8], tenant)
end

local open
local function open_of(tenant)
  if open == nil then
    open = {}
    local holders = redis.call('ZRANGE', KEYS[2], 0, -1)
    if #holders > 0 then
      local owners = redis.call('HMGET', KEYS[5], unpack(holders))
      for i = 1, #holders do
        local owner = owners[i] or ARGV[1]
        open[owner] = (open[owner] or 0) + 1
      end
    end
  end
  return open[tenant] or 0
end

local vtime = tonumber(redis.call('GET', KEYS[9]) or '0')
local waiting = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #waiting, 2 do
  local tenant, pass = waiting[i], tonumber(waiting[i + 1])
  local limit = tonumber(redis.call('HGET', KEYS[7], tenant))
  if limit == nil or open_of(tenant) < limit then
    local queue = queue_of(tenant, KEYS[10])
    local oldest = redis.call('ZPOPMIN', queue)
    if #oldest == 0 then  -- nothing waiting after all
      redis.call('ZREM', KEYS[1], tenant)
      redis.call('HSET', KEYS[8], tenant, number(pass))
    else
      vtime = math.max(vtime, pass)  -- a pass behind the virtual time counts as it
      redis.call('SET', KEYS[9], number(vtime))
      local next_pass = number(vtime + stride_of(tenant, KEYS[6]))
      if redis.call('EXISTS', queue) == 1 then
        redis.call('ZADD', KEYS[1], next_pass, tenant)
      else
        redis.call('ZREM', KEYS[1], tenant)
        redis.call('HSET', KEYS[8], tenant, next_pass)
      end
      redis.call('ZADD', KEYS[2], oldest[2], oldest[1])
      redis.call('HSET', KEYS[4], oldest[1], ARGV[4])
      if tenant ~= ARGV[1] then redis.call('HSET', KEYS[5], oldest[1], tenant) end
      return oldest[1]
    end
  end
end
return false
"""
)

# KEYS: slots, slot_taken_at, slot_tenants, tenants, passes, weights, the default tenant's queue.
# ARGV: default tenant, queue key prefix, the task, its tenant by its id (when it holds no slot).
# Atomically: free the task's slot, put it back in its tenant's queue where it was, and give the
# tenant back the turn its take used (a tenant that has left the round meanwhile rejoins from there).
_PUT_BACK = (
    _HELPERS
    + """
local arrival = redis.call('ZSCORE', KEYS[1], ARGV[3])
local tenant = redis.call('HGET', KEYS[3], ARGV[3]) or (arrival and ARGV[1]) or ARGV[4]
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('ZADD', queue_of(tenant, KEYS[7]), arrival or '0', ARGV[3])
if arrival then
  local stride = stride_of(tenant, KEYS[6])
  local pass = tonumber(redis.call('ZSCORE', KEYS[4], tenant))
  if pass ~= nil and pass >= 0 then
    redis.call('ZADD', KEYS[4], number(math.max(0, pass - stride)), tenant)
    return
  end
  local old = tonumber(redis.call('HGET', KEYS[5], tenant))
  if old ~= nil then redis.call('HSET', KEYS[5], tenant, number(math.max(0, old - stride))) end
end
redis.call('ZADD', KEYS[4], 'NX', '-1', tenant)
"""
)


class Admission:
    def __init__(self, connection: redis.Redis, keys: Keys, max_concurrency: int) -> None:
        self.redis = connection
        self.keys = keys
        self.max_concurrency = max_concurrency
        self._take_next = connection.register_script(_TAKE_NEXT)
        self._put_back = connection.register_script(_PUT_BACK)

    def enqueue(self, pipe: Pipeline, external_task_id: str, tenant: str = DEFAULT_TENANT) -> None:
        pipe.zadd(self._queue(tenant), {external_task_id: time.time_ns() // 1000}, nx=True)
        pipe.zadd(self.keys.submit_tenants, {tenant: JOINING}, nx=True)

    def take_next(self) -> str | None:
        """The next task to send upstream, now holding a slot; None when paused, full, or when no
        tenant that may send more has work waiting."""
        k = self.keys
        taken = self._take_next(
            keys=[
                k.submit_tenants,
                k.slots,
                k.pause_until,
                k.slot_taken_at,
                k.slot_tenants,
                k.tenant_weights,
                k.tenant_max_open,
                k.submit_passes,
                k.submit_vtime,
                k.submit_queue,
            ],
            args=[DEFAULT_TENANT, self._queue_prefix, self.max_concurrency, now_ms()],
        )
        return text(taken) if taken else None

    def put_back(self, external_task_id: str) -> None:
        """Free the task's slot and return it to its tenant's queue in its arrival place (before later
        ones); the tenant gets back the turn it spent on it."""
        k = self.keys
        self._put_back(
            keys=[
                k.slots,
                k.slot_taken_at,
                k.slot_tenants,
                k.submit_tenants,
                k.submit_passes,
                k.tenant_weights,
                k.submit_queue,
            ],
            args=[DEFAULT_TENANT, self._queue_prefix, external_task_id, tenant_of(external_task_id)],
        )

    def sent(self, pipe: Pipeline, external_task_id: str) -> None:
        """Kling has the task (or said no): it is no longer in the hands of a sender."""
        pipe.hdel(self.keys.slot_taken_at, external_task_id)

    def abandoned(self, older_than_s: float) -> list[str]:
        """Tasks taken to be sent longer ago than that and never settled: their sender died."""
        cutoff = now_ms() - older_than_s * 1000
        taken = self.redis.hgetall(self.keys.slot_taken_at)
        return [text(k) for k, at in taken.items() if int(at) < cutoff]

    def release(self, pipe: Pipeline, external_task_id: str) -> None:
        """The task is final: free its slot."""
        pipe.zrem(self.keys.slots, external_task_id)
        pipe.hdel(self.keys.slot_taken_at, external_task_id)
        pipe.hdel(self.keys.slot_tenants, external_task_id)

    def pause(self) -> float:
        """Kling said slow down (1302/1303/5001): wait longer after each consecutive refusal."""
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

    def waiting(self) -> int:
        """Tasks waiting for a slot, every tenant's."""
        return sum(waiting_by_tenant(self.redis, self.keys).values())

    def waiting_by_tenant(self) -> dict[str, int]:
        return waiting_by_tenant(self.redis, self.keys)

    def in_flight(self) -> int:
        return int(self.redis.zcard(self.keys.slots))

    def _queue(self, tenant: str) -> str:
        return queue_key(self.keys, tenant)

    @property
    def _queue_prefix(self) -> str:
        return self.keys.tenant_submit_queue("")


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
