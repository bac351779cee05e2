"""The submission queue's Lua scripts (domain/admission.py says what they decide, and why).

Each runs atomically in Redis, so concurrent dispatchers never both take a slot, and a task put back
finds its place and its tenant's turn as they were. They build a tenant's queue key from its name: the
keys of the tenants a script has just read cannot be declared in advance, which a single Redis (what the
service runs on, with or without Sentinel, never a cluster) allows.
"""

from __future__ import annotations

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
# the default tenant's queue, queue_units, slot_units, then each other pack's slots and slot_tenants
# (a tenant's max_open counts its tasks in every pack). ARGV: default tenant, queue key prefix,
# max_concurrency, now (ms), the credit in turnovers. Unless paused or full: the next tenant's oldest
# task, moved into its slots.
TAKE_NEXT = (
    _HELPERS
    + """
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > tonumber(ARGV[4]) then return false end
local limit_of_pack = tonumber(ARGV[3])
local used = redis.call('ZCARD', KEYS[2])
for _, units in ipairs(redis.call('HVALS', KEYS[12])) do used = used + tonumber(units) - 1 end
if used >= limit_of_pack then return false end
if redis.call('EXISTS', KEYS[10]) == 1 then  -- also what waited there before tenants had queues
  redis.call('ZADD', KEYS[1], 'NX', '-1', ARGV[1])
end

local vtime = tonumber(redis.call('GET', KEYS[9]) or '0')
local function credit_of(tenant)  -- its turns for that many turnovers of the pack, in virtual time
  return tonumber(ARGV[5]) * limit_of_pack * stride_of(tenant, KEYS[6])
end
-- Passes stay at 0 or above (a negative score marks a tenant joining): a credit that would reach
-- below 0 moves the virtual time and every pass up by as much, which changes no order.
local function lift(by)
  vtime = vtime + by
  redis.call('SET', KEYS[9], number(vtime))
  local round = redis.call('ZRANGEBYSCORE', KEYS[1], 0, '+inf', 'WITHSCORES')
  for i = 1, #round, 2 do redis.call('ZADD', KEYS[1], number(round[i + 1] + by), round[i]) end
  local saved = redis.call('HGETALL', KEYS[8])
  for i = 1, #saved, 2 do redis.call('HSET', KEYS[8], saved[i], number(saved[i + 1] + by)) end
end
local joining = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(0')
-- A credit puts a tenant ahead of those taking turns: joining with none, tenants start level.
local credited = #joining > 0 and redis.call('ZCOUNT', KEYS[1], 0, '+inf') > 0
for _, tenant in ipairs(joining) do
  local pass = vtime
  if credited then pass = vtime - credit_of(tenant) end
  local saved = tonumber(redis.call('HGET', KEYS[8], tenant))  -- its pass when it last left
  if saved ~= nil and saved > pass then pass = saved end
  if pass < 0 then lift(-pass); pass = 0 end
  redis.call('ZADD', KEYS[1], number(pass), tenant)
  redis.call('HDEL', KEYS[8], tenant)
end

local open
local function count_open(slots, slot_tenants)
  local holders = redis.call('ZRANGE', slots, 0, -1)
  if #holders == 0 then return end
  local owners = redis.call('HMGET', slot_tenants, unpack(holders))
  for i = 1, #holders do
    local owner = owners[i] or ARGV[1]
    open[owner] = (open[owner] or 0) + 1
  end
end
local function open_of(tenant)  -- its tasks upstream, in every pack
  if open == nil then
    open = {}
    count_open(KEYS[2], KEYS[5])
    for i = 13, #KEYS, 2 do count_open(KEYS[i], KEYS[i + 1]) end
  end
  return open[tenant] or 0
end

local held_back = {}
local waiting = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #waiting, 2 do
  local tenant, pass = waiting[i], tonumber(waiting[i + 1])
  local limit = tonumber(redis.call('HGET', KEYS[7], tenant))
  if limit ~= nil and open_of(tenant) >= limit then
    held_back[#held_back + 1] = tenant
  else
    local queue = queue_of(tenant, KEYS[10])
    local oldest = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    if #oldest == 0 then  -- nothing waiting after all
      redis.call('ZREM', KEYS[1], tenant)
      redis.call('HSET', KEYS[8], tenant, number(pass))
    else
      local units = math.min(tonumber(redis.call('HGET', KEYS[11], oldest[1]) or '1'), limit_of_pack)
      if used + units > limit_of_pack then return false end  -- it waits for its slots, first in line
      redis.call('ZREM', queue, oldest[1])
      if units > 1 then redis.call('HSET', KEYS[12], oldest[1], units) end
      -- Never further behind than a credit (a pass an earlier version left may be), and a turn
      -- taken on a credit leaves the virtual time where it is.
      pass = math.max(pass, vtime - credit_of(tenant))
      vtime = math.max(vtime, pass)
      redis.call('SET', KEYS[9], number(vtime))
      local next_pass = number(pass + stride_of(tenant, KEYS[6]))
      if redis.call('EXISTS', queue) == 1 then
        redis.call('ZADD', KEYS[1], next_pass, tenant)
      else
        redis.call('ZREM', KEYS[1], tenant)
        redis.call('HSET', KEYS[8], tenant, next_pass)
      end
      -- Those passed over for their max_open fall in at the virtual time: they bank no turns, and
      -- keep no credit, while held back.
      for _, held in ipairs(held_back) do redis.call('ZADD', KEYS[1], number(vtime), held) end
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

# KEYS: slots, slot_taken_at, slot_tenants, tenants, passes, weights, the default tenant's queue,
# slot_units.
# ARGV: default tenant, queue key prefix, the task, its tenant by its id (when it holds no slot).
# Atomically: free the task's slot, put it back in its tenant's queue where it was, and give the
# tenant back the turn its take used (a tenant that has left the round meanwhile rejoins from there).
PUT_BACK = (
    _HELPERS
    + """
local arrival = redis.call('ZSCORE', KEYS[1], ARGV[3])
local tenant = redis.call('HGET', KEYS[3], ARGV[3]) or (arrival and ARGV[1]) or ARGV[4]
redis.call('ZREM', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('HDEL', KEYS[8], ARGV[3])
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
