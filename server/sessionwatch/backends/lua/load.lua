-- ARGV[7] id, ARGV[8] '1' to touch when refresh is due, ARGV[9] '1' to touch anyway.
-- Returns {'ok', extended, fields...} or {'gone', reason}.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local id = ARGV[7]
local r, reason = live(id)
if not r then return {'gone', reason or ''} end
local extended = 0
if ARGV[9] == '1' or (ARGV[8] == '1' and NOW - tonumber(r.seen) >= REFRESH) then
  extended = touch(id, r)
end
local out = {'ok', extended}
for _, v in ipairs(flat(r)) do out[#out + 1] = v end
return out
