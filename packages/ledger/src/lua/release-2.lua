--[[
  Gives back one slot this node held on a backend (never below 0) and tells the nodes listening on the backend.

  KEYS[1]  counts  HASH  node id -> connections held
  KEYS[2]  nodes   ZSET  node id -> lease expiry (ms)

  ARGV[1]  node id
  ARGV[2]  lease ttl (ms)
  ARGV[3]  this backend's release channel: gets {"b": backend, "n": node id, "t": total} as JSON
  ARGV[4]  PUBLISH (single Redis) or SPUBLISH (Redis Cluster: the channel has the keys' slot)
  ARGV[5]  backend id

  Returns {code, total, present}
    code     1 released, -1 bad argument, -2 wrong key type
    total    live connections on the backend after the call
    present  1 if this node's lease was alive before the call
]]
-- @include lease-common

local counts, nodes = KEYS[1], KEYS[2]
local node, ttl, channel, backend = ARGV[1], natural(ARGV[2]), ARGV[3], ARGV[5]
pub = ARGV[4]
if (pub ~= 'PUBLISH' and pub ~= 'SPUBLISH') or node == nil or node == '' or ttl == nil or ttl == 0 then return { -1, 0, 0 } end
if wrongType(counts, nodes) then return { -2, 0, 0 } end

local now = nowMs()
local total = prune(counts, nodes, now, channel, backend)
local present = alive(nodes, node)
-- After the prune an entry exists only for a live node, so it is part of total.
local own = tonumber(redis.call('HGET', counts, node)) or 0
if own > 1 then
  redis.call('HINCRBY', counts, node, -1)
  total = total - 1
elseif own == 1 then
  redis.call('HDEL', counts, node)
  total = total - 1
end
keepAlive(counts, nodes, node, now, ttl)
redis.call(pub, channel, cjson.encode({ b = backend, n = node, t = total }))
return { 1, total, present }
