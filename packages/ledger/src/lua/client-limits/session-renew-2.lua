--[[
  Renews the leases of the sessions one node holds for one client address (its heartbeat). A
  session pruned while its node stalled is counted again: it is still open.

  KEYS[1]  address  ZSET  session member -> lease expiry (ms)
  KEYS[2]  prefix   ZSET  session member -> lease expiry (ms)

  ARGV[1]  lease ttl (ms)
  ARGV[2…] members (node id, a space, session id)

  Returns {code, renewed}
    code     1 ok, -1 bad argument, -2 wrong key type
    renewed  members written
]]
local addr, net = KEYS[1], KEYS[2]
local ttl = tonumber(ARGV[1])
if ttl == nil or ttl ~= ttl or ttl <= 0 or #ARGV < 2 then return { -1, 0 } end
for _, key in ipairs({ addr, net }) do
  local t = redis.call('TYPE', key).ok
  if t ~= 'zset' and t ~= 'none' then return { -2, 0 } end
end
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ttl
for i = 2, #ARGV do
  redis.call('ZADD', addr, expiry, ARGV[i])
  redis.call('ZADD', net, expiry, ARGV[i])
end
for _, key in ipairs({ addr, net }) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return { 1, #ARGV - 1 }
