-- ARGV[7] id, ARGV[8] '1' when claims are exclusive, ARGV[9] claimer device (JSON).
-- A claim is activity: the idle deadline is refreshed when due, as load.lua does, so
-- no load is needed before it. The claimer is the same browser when its browser, OS
-- and place equal the device the session was created on.
-- An exclusive claim is a takeover: recorded in the trail ('superseded', with the
-- claimer's device marked new_device / new_place for the user, as its tabs are told).
-- Returns {'ok', extended, fields...} (the record after the claim) or {'gone', reason}.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local id = ARGV[7]
local r, reason = live(id)
if not r then return {'gone', reason or ''} end
local extended = 0
if NOW - tonumber(r.seen) >= REFRESH then extended = touch(id, r) end
local by = cjson.decode(ARGV[9])
local dev = cjson.decode(r.dev)
by['same_browser'] = by.browser == dev.browser and by.os == dev.os and by.place == dev.place
r.gen = tostring(redis.call('HINCRBY', skey(id), 'gen', 1))
r.cby = cjson.encode(by)
redis.call('HSET', skey(id), 'cby', r.cby)
if ARGV[8] == '1' then
  local marks = novelty(r.uid, by)
  local record = {gen = r.gen}
  if marks then
    by.new_device, by.new_place = marks.new_device, marks.new_place
    record.new_device, record.new_place = flag(marks.new_device), flag(marks.new_place)
  end
  publish_session(id, {type = 'superseded', gen = tonumber(r.gen), by = by})
  record.by = cjson.encode(by)
  audit('superseded', id, r.uid, r.dev, record)
end
local out = {'ok', extended}
for _, v in ipairs(flat(r)) do out[#out + 1] = v end
return out
