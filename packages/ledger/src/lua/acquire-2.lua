--[[
  Takes one connection slot on a backend iff the live cluster-wide count is below the cap.

  KEYS[1]  counts  HASH  node id -> connections held
  KEYS[2]  nodes   ZSET  node id -> lease expiry (ms)

  ARGV[1]  node id
  ARGV[2]  lease ttl (ms)
  ARGV[3]  this backend's release channel
  ARGV[4]  PUBLISH (single Redis) or SPUBLISH (Redis Cluster: the channel has the keys' slot)
  ARGV[5]  backend id
  ARGV[6]  cap

  Returns {code, total, present}
    code     1 acquired, 2 full, -1 bad argument, -2 wrong key type
    total    live connections on the backend after the call
    present  1 if this node's lease was alive before the call (0 after a lapse: the node resyncs)
]]
-- @include lease-common

local counts, nodes = KEYS[1], KEYS[2]
local node, ttl, channel, backend, cap = ARGV[1], natural(ARGV[2]), ARGV[3], ARGV[5], natural(ARGV[6])
pub = ARGV[4]
if (pub ~= 'PUBLISH' and pub ~= 'SPUBLISH') or node == nil or node == '' or ttl == nil or ttl == 0 or cap == nil then return { -1, 0, 0 } end
if wrongType(counts, nodes) then return { -2, 0, 0 } end

local now = nowMs()
local total = prune(counts, nodes, now, channel, backend)
local present = alive(nodes, node)
local code = 2
if total < cap then
  redis.call('HINCRBY', counts, node, 1)
  total = total + 1
  code = 1
end
keepAlive(counts, nodes, node, now, ttl)
return { code, total, present }
