--[[
  Renews this node's lease on a backend and reads the live count (the node's periodic refresh).

  KEYS[1]  counts  HASH  node id -> connections held
  KEYS[2]  nodes   ZSET  node id -> lease expiry (ms)

  ARGV[1]  node id
  ARGV[2]  lease ttl (ms)
  ARGV[3]  this backend's release channel
  ARGV[4]  PUBLISH (single Redis) or SPUBLISH (Redis Cluster: the channel has the keys' slot)
  ARGV[5]  backend id

  Returns {code, total, present, own, live}
    code     1 ok, -1 bad argument, -2 wrong key type
    total    live connections on the backend
    present  1 if this node's lease was alive before the call
    own      connections Redis counts for this node
    live     nodes with a live lease on the backend, this one included (the node's liveness next
             to the counts: it needs no other key, so no other Cluster master); added after the
             first V2 scripts, so a reader must take a reply without it
]]
-- @include lease-common

local counts, nodes = KEYS[1], KEYS[2]
local node, ttl, channel, backend = ARGV[1], natural(ARGV[2]), ARGV[3], ARGV[5]
pub = ARGV[4]
if (pub ~= 'PUBLISH' and pub ~= 'SPUBLISH') or node == nil or node == '' or ttl == nil or ttl == 0 then return { -1, 0, 0, 0, 0 } end
if wrongType(counts, nodes) then return { -2, 0, 0, 0, 0 } end

local now = nowMs()
local total = prune(counts, nodes, now, channel, backend)
local present = alive(nodes, node)
local own = tonumber(redis.call('HGET', counts, node)) or 0
keepAlive(counts, nodes, node, now, ttl)
return { 1, total, present, own, redis.call('ZCARD', nodes) }
