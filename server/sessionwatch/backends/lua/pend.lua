-- Store a pending sign-in of on_limit="ask". KEYS[1] its key (KeyNames.pending: the
-- user's slot). ARGV[7] user, ARGV[8] the browser session it is bound to ('' none),
-- ARGV[9] when it expires (ms), ARGV[10] how long to keep it (ms): a grace period
-- longer, so that an expired or used one is told apart from an unknown one.
redis.call('HSET', KEYS[1], 'uid', ARGV[7], 'sid', ARGV[8], 'exp', ARGV[9])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[10]))
return 1
