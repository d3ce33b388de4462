-- ARGV[7] id, ARGV[8] reason ('revoked' | 'logged_out'), ARGV[9] required owner or '',
-- ARGV[10] the app's reason code for 'revoked'. Returns 1 when a live session ended.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local id, reason, owner = ARGV[7], ARGV[8], ARGV[9]
local r = live(id)
if not r then return 0 end
if owner ~= '' and r.uid ~= owner then return 0 end
local event, record = {}, {}
if reason == 'revoked' then event.reason = ARGV[10]; record.reason = ARGV[10] end
finish(id, r, reason, event, record)
return 1
