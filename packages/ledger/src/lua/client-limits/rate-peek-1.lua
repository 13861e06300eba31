--[[
  The sliding-window estimate of rate-hit-1.lua without counting an event: "would one more be over
  the limit?" (failed AUTH attempts are counted only when they fail, but checked before each try).

  KEYS[1]  rate  HASH  w -> current window index, c -> its count, p -> previous window's count

  ARGV[1]  window (ms)
  ARGV[2]  limit

  Returns {code, count}
    code   1 below the limit, 2 at or over it, -1 bad argument, -2 wrong key type
    count  events in the sliding window (rounded down)
]]
local key = KEYS[1]
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if window == nil or window ~= window or window <= 0 or limit == nil or limit ~= limit then return { -1, 0 } end
local kt = redis.call('TYPE', key).ok
if kt ~= 'hash' and kt ~= 'none' then return { -2, 0 } end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = math.floor(now / window)
local state = redis.call('HMGET', key, 'w', 'c', 'p')
local w, c, p = tonumber(state[1]), tonumber(state[2]) or 0, tonumber(state[3]) or 0
if w ~= idx then
  if w == idx - 1 then p = c else p = 0 end
  c = 0
end
local estimate = p * (window - (now - idx * window)) / window + c
local count = math.floor(estimate)
if estimate + 1 > limit then return { 2, count } end
return { 1, count }
