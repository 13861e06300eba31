--[[
  Removes this node from a backend on a clean shutdown, so its slots are free at once rather
  than after its lease expires.

  KEYS[1]  counts  HASH  node id -> connections held
  KEYS[2]  nodes   ZSET  node id -> lease expiry (ms)

  ARGV[1]  node id
  ARGV[2]  lease ttl (ms)
  ARGV[3]  this backend's release channel: gets {"b": backend, "n": node id, "t": total} when slots were freed
  ARGV[4]  PUBLISH (single Redis) or SPUBLISH (Redis Cluster: the channel has the keys' slot)
  ARGV[5]  backend id

  Returns {code, total}
    code     1 ok, -1 bad argument, -2 wrong key type
    total    live connections on the backend after the call
]]
-- @include lease-common

local counts, nodes = KEYS[1], KEYS[2]
local node, ttl, channel, backend = ARGV[1], natural(ARGV[2]), ARGV[3], ARGV[5]
pub = ARGV[4]
if (pub ~= 'PUBLISH' and pub ~= 'SPUBLISH') or node == nil or node == '' or ttl == nil or ttl == 0 then return { -1, 0 } end
if wrongType(counts, nodes) then return { -2, 0 } end

local total = prune(counts, nodes, nowMs(), channel, backend)
local own = tonumber(redis.call('HGET', counts, node)) or 0
redis.call('HDEL', counts, node)
redis.call('ZREM', nodes, node)
total = total - own
if own > 0 then
  redis.call(pub, channel, cjson.encode({ b = backend, n = node, t = total }))
end
return { 1, total }
