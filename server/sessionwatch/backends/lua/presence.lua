-- Mark sockets live (or gone) for live_tabs. ARGV[7]: until (ms), or '' to remove them;
-- then pairs of (live-sockets set of the socket's session, KeyNames.presence; socket
-- id). KEYS: the sets, as far as the topology lets a script declare them: all of them
-- on one Redis; on a Redis Cluster, where declared keys must share a slot, one call per
-- primary declares only the first (the call is routed by it, and told MOVED when the
-- slot map is stale) and touches the others, of other slots of that primary, undeclared
-- (which Redis allows a script without a shebang line; a key whose slot is not on the
-- node fails the script, and the caller sends those sockets again per slot:
-- redis_cluster.py). One script per batch: a pipeline of three commands per socket
-- cost the worker 9 times the CPU (21 ms vs 2.4 ms per 256 sockets).
local UNTIL = tonumber(ARGV[7])
for i = 8, #ARGV - 1, 2 do
  local key = ARGV[i]
  if UNTIL == nil then
    redis.call('ZREM', key, ARGV[i + 1])
  else
    redis.call('ZADD', key, UNTIL, ARGV[i + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', NOW)
    redis.call('PEXPIRE', key, math.max(UNTIL - NOW, 1))
  end
end
return (#ARGV - 7) / 2
