--[[
  Sets this node's count on a backend to the node's own tally (after Redis was unreachable or
  the node's lease lapsed). A SET, not an increment: replaying it never counts a slot twice.

  KEYS[1]  counts  HASH  node id -> connections held
  KEYS[2]  nodes   ZSET  node id -> lease expiry (ms)

  ARGV[1]  node id
  ARGV[2]  lease ttl (ms)
  ARGV[3]  this backend's release channel: gets {"b": backend, "n": node id, "t": total} as JSON
  ARGV[4]  PUBLISH (single Redis) or SPUBLISH (Redis Cluster: the channel has the keys' slot)
  ARGV[5]  backend id
  ARGV[6]  connections this node holds on the backend

  Returns {code, total}
    code     1 ok, -1 bad argument, -2 wrong key type
    total    live connections on the backend after the call
]]
-- @include lease-common

local counts, nodes = KEYS[1], KEYS[2]
local node, ttl, channel, backend, held = ARGV[1], natural(ARGV[2]), ARGV[3], ARGV[5], natural(ARGV[6])
pub = ARGV[4]
if (pub ~= 'PUBLISH' and pub ~= 'SPUBLISH') or node == nil or node == '' or ttl == nil or ttl == 0 or held == nil then return { -1, 0 } end
if wrongType(counts, nodes) then return { -2, 0 } end

local now = nowMs()
local total = prune(counts, nodes, now, channel, backend)
local own = tonumber(redis.call('HGET', counts, node)) or 0
if held > 0 then
  redis.call('HSET', counts, node, held)
else
  redis.call('HDEL', counts, node)
end
total = total - own + held
keepAlive(counts, nodes, node, now, ttl)
-- Others may be waiting on slots this node gave back while it could not say so.
redis.call(pub, channel, cjson.encode({ b = backend, n = node, t = total }))
return { 1, total }
