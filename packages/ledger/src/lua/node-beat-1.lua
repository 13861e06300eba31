--[[
  Node liveness for the whole cluster: renews this node in the set of live nodes and counts
  them. A node without Redis keeps to floor(cap / the last count it saw).

  KEYS[1]  live  ZSET  node id -> liveness expiry (ms, Redis clock)

  ARGV[1]  node id
  ARGV[2]  lease ttl (ms)

  Returns {code, live}
    code     1 ok, -1 bad argument, -2 wrong key type
    live     live nodes, this one included
]]

local live = KEYS[1]
local node, ttl = ARGV[1], tonumber(ARGV[2])
if node == nil or node == '' or ttl == nil or ttl ~= ttl or ttl <= 0 then return { -1, 0 } end
local lt = redis.call('TYPE', live).ok
if lt ~= 'zset' and lt ~= 'none' then return { -2, 0 } end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
redis.call('ZADD', live, now + ttl, node)
if redis.call('PTTL', live) < ttl then redis.call('PEXPIRE', live, ttl) end
return { 1, redis.call('ZCARD', live) }
