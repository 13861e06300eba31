--[[
  The suspension record of one user, if any.

  KEYS[1]  suspended  HASH  user -> record (JSON: since, reason, node)

  ARGV[1]  user

  Returns {code, record}
    code    1 suspended (record follows), 2 not suspended, -1 bad argument, -2 wrong key type
]]
local key = KEYS[1]
local user = ARGV[1]
if user == nil or user == '' then return { -1 } end
local t = redis.call('TYPE', key).ok
if t ~= 'hash' and t ~= 'none' then return { -2 } end
local record = redis.call('HGET', key, user)
if record then return { 1, record } end
return { 2 }
