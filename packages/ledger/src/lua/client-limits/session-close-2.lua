--[[
  Stops counting one client session (it ended).

  KEYS[1]  address  ZSET  session member -> lease expiry (ms)
  KEYS[2]  prefix   ZSET  session member -> lease expiry (ms)

  ARGV[1]  member (node id, a space, session id)

  Returns {code, address, prefix}
    code     1 ok, -1 bad argument, -2 wrong key type
    address  sessions left on the address
    prefix   sessions left on the prefix
]]
local addr, net = KEYS[1], KEYS[2]
local member = ARGV[1]
if member == nil or member == '' then return { -1, 0, 0 } end
for _, key in ipairs({ addr, net }) do
  local t = redis.call('TYPE', key).ok
  if t ~= 'zset' and t ~= 'none' then return { -2, 0, 0 } end
end
redis.call('ZREM', addr, member)
redis.call('ZREM', net, member)
return { 1, redis.call('ZCARD', addr), redis.call('ZCARD', net) }
