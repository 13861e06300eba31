--[[
  Lifts the suspension of one user (an operator's decision).

  KEYS[1]  suspended  HASH  user -> record (JSON: since, reason, node)

  ARGV[1]  user

  Returns {code}
    code  1 lifted, 2 was not suspended, -1 bad argument, -2 wrong key type
]]
local key = KEYS[1]
local user = ARGV[1]
if user == nil or user == '' then return { -1 } end
local t = redis.call('TYPE', key).ok
if t ~= 'hash' and t ~= 'none' then return { -2 } end
if redis.call('HDEL', key, user) == 1 then return { 1 } end
return { 2 }
