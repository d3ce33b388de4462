-- Redis Cluster only: the second half of a login whose old session lives in another
-- slot (an anonymous session, or another user's). ARGV[7] the old id. Forgets it and
-- tells its tabs 'rotated'; returns {gen, tab key, last claimer} as they were at that
-- moment (a claim may have raced the login), or {} when it had already ended.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local id = ARGV[7]
local r = live(id)
if not r then return {} end
forget(id, r.uid)
publish_session(id, {type = 'rotated'})
return {r.gen, r.tk, r.cby or ''}
