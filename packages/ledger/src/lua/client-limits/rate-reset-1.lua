--[[
  Forgets the events of one rate key (an operator lifted a sender's suspension: it starts afresh
  instead of being suspended again by its next message).

  KEYS[1]  rate  HASH  w -> current window index, c -> its count, p -> previous window's count

  ARGV[1]  unused (scripts take at least one argument)

  Returns {code, removed}
    code     1 ok, -2 wrong key type
    removed  1 when there were events, else 0
]]
local key = KEYS[1]
local kt = redis.call('TYPE', key).ok
if kt ~= 'hash' and kt ~= 'none' then return { -2, 0 } end
return { 1, redis.call('DEL', key) }
