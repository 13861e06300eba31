--[[
  Shared by the per-backend scripts; the loader pastes it where a script says so.

  A backend's state is two keys with one hash tag, so one script can read and write both in
  Redis Cluster:
    counts  HASH  node id -> connections that node holds on the backend
    nodes   ZSET  node id scored by its lease expiry, in ms on the Redis clock
  A node counts only while its lease is alive; every script a node runs renews it, and the
  heartbeat renews it every ttl/3. Using Redis' clock keeps node clocks out of the question.
]]

-- PUBLISH or SPUBLISH (ARGV[4] of every per-backend script), set by the script before any call.
local pub = 'PUBLISH'

local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A non-negative integer argument, or nil (also for NaN, which tonumber accepts).
local function natural(arg)
  local n = tonumber(arg)
  if n == nil or n ~= n or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

local function wrongType(counts, nodes)
  local ct = redis.call('TYPE', counts).ok
  local nt = redis.call('TYPE', nodes).ok
  return (ct ~= 'hash' and ct ~= 'none') or (nt ~= 'zset' and nt ~= 'none')
end

-- Drops the entries of nodes whose lease expired and returns the live total. When a dead
-- node's slots are freed this way, the nodes listening on the backend are told, as for a release.
local function prune(counts, nodes, now, channel, backend)
  local total, freed = 0, 0
  local entries = redis.call('HGETALL', counts)
  for i = 1, #entries, 2 do
    local expiry = tonumber(redis.call('ZSCORE', nodes, entries[i]))
    local n = tonumber(entries[i + 1]) or 0
    if expiry ~= nil and expiry > now then
      total = total + n
    else
      freed = freed + n
      redis.call('HDEL', counts, entries[i])
    end
  end
  redis.call('ZREMRANGEBYSCORE', nodes, '-inf', now)
  if freed > 0 then
    redis.call(pub, channel, cjson.encode({ b = backend, n = '', t = total }))
  end
  return total
end

local function alive(nodes, node)
  if redis.call('ZSCORE', nodes, node) then return 1 end
  return 0
end

-- Renews this node's lease; the keys themselves expire once no node renews anything.
local function keepAlive(counts, nodes, node, now, ttl)
  redis.call('ZADD', nodes, now + ttl, node)
  for _, key in ipairs({ counts, nodes }) do
    local left = redis.call('PTTL', key)
    if left ~= -2 and left < ttl then redis.call('PEXPIRE', key, ttl) end
  end
end
