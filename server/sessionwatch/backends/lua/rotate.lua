-- Redis Cluster only: the second half of a login whose old session lives in another
-- slot (an anonymous session, or another user's). ARGV[7] the old id. Forgets it and
-- tells its tabs 'rotated'. Returns 1, or 0 when it had already ended. Nothing of its
-- claim moves to the new session (new tab key and generation, as login.lua on one Redis).
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local id = ARGV[7]
local r = live(id)
if not r then return 0 end
end_family_of(id, r.uid)  -- a sign-in decides remember-me anew (login.lua)
forget(id, r.uid)
publish_session(id, {type = 'rotated'})
return 1
