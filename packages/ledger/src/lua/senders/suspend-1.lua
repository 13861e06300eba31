--[[
  Suspends one authenticated user cluster-wide, unless already suspended (the first suspension's
  record is kept: when, why and by which node).

  KEYS[1]  suspended  HASH  user -> record (JSON: since, reason, node)

  ARGV[1]  user
  ARGV[2]  record

  Returns {code}
    code  1 suspended now, 2 was already suspended, -1 bad argument, -2 wrong key type
]]
local key = KEYS[1]
local user, record = ARGV[1], ARGV[2]
if user == nil or user == '' or record == nil or record == '' then return { -1 } end
local t = redis.call('TYPE', key).ok
if t ~= 'hash' and t ~= 'none' then return { -2 } end
if redis.call('HSETNX', key, user, record) == 1 then return { 1 } end
return { 2 }
