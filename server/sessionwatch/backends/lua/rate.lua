-- One event of a subject under a deployment-wide rate (core/limits.py gcra_take: the
-- same arithmetic). Runs alone, without the prelude: one GET and at most one SET on one
-- key, nothing published. KEYS[1]: the subject's rate key (KeyNames.rate).
-- ARGV: now (ms, the caller's clock), interval (ms per event), capacity (ms).
-- Returns 0 when the event is let through, else the milliseconds until one would be.
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local after = tat + interval
if after - now > capacity then
  return math.max(1, math.ceil(after - now - capacity))
end
redis.call('SET', KEYS[1], string.format('%.3f', after), 'PX', math.max(1, math.ceil(after - now)))
return 0
