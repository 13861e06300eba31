--[[
  Counts one client session iff the live sessions of its address and of its network prefix are
  below their caps. Sessions are members scored by their lease expiry (ms, Redis clock); the node
  holding a session renews it, so the sessions of a dead node stop counting after the lease ttl.

  KEYS[1]  address  ZSET  session member -> lease expiry (ms)
  KEYS[2]  prefix   ZSET  session member -> lease expiry (ms)

  ARGV[1]  member (node id, a space, session id)
  ARGV[2]  lease ttl (ms)
  ARGV[3]  cap per address (0: none)
  ARGV[4]  cap per prefix (0: none)

  Returns {code, address, prefix}
    code     1 counted, 2 address at its cap, 3 prefix at its cap, -1 bad argument, -2 wrong key type
    address  live sessions of the address (after the call)
    prefix   live sessions of the prefix (after the call)
]]
local function natural(arg)
  local n = tonumber(arg)
  if n == nil or n ~= n or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

local addr, net = KEYS[1], KEYS[2]
local member, ttl, capA, capP = ARGV[1], natural(ARGV[2]), natural(ARGV[3]), natural(ARGV[4])
if member == nil or member == '' or ttl == nil or ttl == 0 or capA == nil or capP == nil then
  return { -1, 0, 0 }
end
for _, key in ipairs({ addr, net }) do
  local t = redis.call('TYPE', key).ok
  if t ~= 'zset' and t ~= 'none' then return { -2, 0, 0 } end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', addr, '-inf', now)
redis.call('ZREMRANGEBYSCORE', net, '-inf', now)
local a = redis.call('ZCARD', addr)
local p = redis.call('ZCARD', net)
if capA > 0 and a >= capA then return { 2, a, p } end
if capP > 0 and p >= capP then return { 3, a, p } end
redis.call('ZADD', addr, now + ttl, member)
redis.call('ZADD', net, now + ttl, member)
for _, key in ipairs({ addr, net }) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return { 1, a + 1, p + 1 }
