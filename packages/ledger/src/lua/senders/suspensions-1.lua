--[[
  Every suspended user with its record.

  KEYS[1]  suspended  HASH  user -> record (JSON: since, reason, node)

  Returns {code, user1, record1, user2, record2, ...}
    code  1 ok, -2 wrong key type
]]
local key = KEYS[1]
local t = redis.call('TYPE', key).ok
if t ~= 'hash' and t ~= 'none' then return { -2 } end
local out = { 1 }
local all = redis.call('HGETALL', key)
for i = 1, #all do out[#out + 1] = all[i] end
return out
