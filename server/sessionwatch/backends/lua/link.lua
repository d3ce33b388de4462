-- Adds a session to one provider link (docs/sso.md): a sorted set of public ids scored
-- by the time each stays linked (the session's absolute expiry). Runs alone, without
-- the prelude: one key, nothing published.
-- KEYS[1]: the link (KeyNames.provider_link), a slot of its own on a Cluster.
-- ARGV[1]: now (ms); ARGV[2]: until (ms); ARGV[3]: the public id; ARGV[4]: most members.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -1 - tonumber(ARGV[4]))
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
-- Relative to the caller's clock, as every time here (never the server's clock).
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(tonumber(last[2]) - tonumber(ARGV[1]))))
return 0
