-- Redis Cluster only: after rotate.lua, the new session takes over the old one's claim
-- state (as login.lua does in one step on one Redis). ARGV[7] new id, ARGV[8..10] the
-- old session's final gen, tab key and last claimer. The generation never goes down,
-- so a tab superseded by a claim that raced the login stays superseded.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local id, gen = ARGV[7], tonumber(ARGV[8])
local r = live(id)
if not r then return 0 end
if tonumber(r.gen) > gen then gen = tonumber(r.gen) end
redis.call('HSET', skey(id), 'gen', gen, 'tk', ARGV[9], 'cby', ARGV[10])
return 1
