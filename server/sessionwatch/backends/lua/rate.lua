-- Events under deployment-wide rates (core/limits.py gcra_take: the same arithmetic),
-- all or nothing: each bucket is counted only when every one has room. Runs alone,
-- without the prelude: a GET and at most a SET per key, nothing published.
-- KEYS[i]: a subject's rate key (KeyNames.rate), all in one slot on a Cluster.
-- ARGV[1]: now (ms, the caller's clock); then per key: interval (ms per event), capacity (ms).
-- Returns 0 when the events are counted, else the milliseconds until all would be.
local now = tonumber(ARGV[1])
local after = {}
local wait = 0
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  after[i] = tat + tonumber(ARGV[2 * i])
  local over = after[i] - now - tonumber(ARGV[2 * i + 1])
  if over > 0 then wait = math.max(wait, math.ceil(over)) end
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.3f', after[i]), 'PX', math.max(1, math.ceil(after[i] - now)))
end
return 0
