-- ARGV[7] old id or '', ARGV[8] new id, ARGV[9] user, ARGV[10] limit (-1: none),
-- ARGV[11] '1' to deny at the limit, ARGV[12..] field/value pairs of the new record
-- (its data is the caller's: the request may have changed it since loading; its claim
-- generation and tab key are new: no tab token of the old session stays valid).
-- Returns {'ok', evicted ids...} or {'denied'}. Mirrors policy.select_evictions.
local old_id, new_id, uid = ARGV[7], ARGV[8], ARGV[9]
local limit, deny = tonumber(ARGV[10]), ARGV[11] == '1'
-- KEYS: the new session's names (KeyNames.session_keys), the user's (user_keys), and
-- when old id is given the old session's; sessions found in the index are derived.
declare_session(new_id, 1)
declare_user(uid, 5)
if old_id ~= '' then declare_session(old_id, 7) end
local record = {}
for i = 12, #ARGV, 2 do record[ARGV[i]] = ARGV[i + 1] end

local old = nil
if old_id ~= '' then old = live(old_id) end

local existing = {}
local members = redis.call('ZRANGE', ukey(uid), 0, -1)
for _, sid in ipairs(members) do
  if sid ~= old_id then
    local r = live(sid)
    if r then
      existing[#existing + 1] = {sid, tonumber(r.created), r}
    else
      redis.call('ZREM', ukey(uid), sid)
    end
  end
end

local evict = {}
if limit >= 0 and #existing >= limit then
  table.sort(existing, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  for i = 1, #existing - limit + 1 do evict[#evict + 1] = existing[i] end
end
if #evict > 0 and deny then
  -- The refusal is recorded (the session asking is the old one; no new one exists).
  audit('limit_denied', old_id, uid, record.dev, {reason = 'session_limit'})
  return {'denied'}
end

if old then
  end_family_of(old_id, old.uid)  -- a sign-in decides remember-me anew
  forget(old_id, old.uid)
  publish_session(old_id, {type = 'rotated'})
end

local by = cjson.decode(record.dev)
by['at'] = NOW
by['same_browser'] = false
local marks = novelty(uid, by)
local signed = {}
if marks then
  by.new_device, by.new_place = marks.new_device, marks.new_place
  signed.new_device, signed.new_place = flag(marks.new_device), flag(marks.new_place)
end
signed.by = cjson.encode(by)
for _, e in ipairs(evict) do
  finish(e[1], e[3], 'evicted', {by = by}, {by = signed.by, actor = string.format('session:%s', new_id)})
end

redis.call('DEL', tkey(new_id))
redis.call('HSET', skey(new_id), unpack(flat(record)))
keep_until_deadline(new_id, record)
redis.call('ZADD', ukey(uid), tonumber(record.created), new_id)
redis.call('PEXPIRE', ukey(uid), tonumber(record.abs) - NOW + GRACE)
redis.call(PUBLISH, uchan(uid), cjson.encode({type = 'signed_in', session = new_id, by = by}))
audit('signed_in', new_id, uid, record.dev, signed)

local out = {'ok', unpack(EVICTED)}
for _, e in ipairs(evict) do out[#out + 1] = e[1] end
return out
