--[[
  Counts one event in a sliding window approximated by two fixed windows: the previous window's
  count weighted by the share of it the sliding window still covers, plus the current count
  (the same arithmetic as SlidingWindow in client-limits.ts). Refused events count too.

  KEYS[1]  rate  HASH  w -> current window index, c -> its count, p -> previous window's count

  ARGV[1]  window (ms)
  ARGV[2]  limit

  Returns {code, count}
    code   1 within the limit, 2 over it, -1 bad argument, -2 wrong key type
    count  events in the sliding window, this one included (rounded down)
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
c = c + 1
redis.call('HSET', key, 'w', idx, 'c', c, 'p', p)
redis.call('PEXPIRE', key, 2 * window)
-- Decided on the unrounded estimate: four quick events across a window edge are still four.
local estimate = p * (window - (now - idx * window)) / window + c
local count = math.floor(estimate)
if estimate > limit then return { 2, count } end
return { 1, count }
