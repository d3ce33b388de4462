-- ARGV[7] id, ARGV[8] data. A session that has ended is never resurrected.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local r = live(ARGV[7])
if not r then return 0 end
redis.call('HSET', skey(ARGV[7]), 'data', ARGV[8])
return 1
