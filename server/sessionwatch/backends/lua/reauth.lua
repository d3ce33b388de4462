-- ARGV[7] id. The user proved who they are again: auth = now; nothing else changes.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local r = live(ARGV[7])
if not r then return 0 end
redis.call('HSET', skey(ARGV[7]), 'auth', ARGV[2])
return 1
