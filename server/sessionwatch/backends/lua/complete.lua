-- The head of complete_login: redis.py runs it with login.lua's body after it, as one
-- script, so the pending sign-in's checks, the limit's re-check, the chosen evictions
-- and the sign-in are one atomic step in the user's slot (the pending key carries the
-- user's tag).
-- KEYS: login.lua's, then the pending sign-in's key (taken out here).
-- ARGV[7] the session the completion comes from ('' none), ARGV[8] n, ARGV[9..8+n] the
-- ids the user chose to sign out: taken out here, so login.lua's own start at ARGV[7]
-- (old id, new id, user, limit, deny, record fields).
-- Returns {'refused', why} (unknown, used, expired, foreign) or {'denied'} (still at the
-- limit) having changed nothing, else login.lua's reply.
local pending_key = table.remove(KEYS)
local from = table.remove(ARGV, 7)
local chosen = {}
for _ = 1, tonumber(table.remove(ARGV, 7)) do chosen[table.remove(ARGV, 7)] = true end
local pending_uid, pending_limit = ARGV[9], tonumber(ARGV[10])
declare_user(pending_uid, 5)

local raw = redis.call('HGETALL', pending_key)
if #raw == 0 then return {'refused', 'unknown'} end
local pending = {}
for i = 1, #raw, 2 do pending[raw[i]] = raw[i + 1] end
if pending.used == '1' then return {'refused', 'used'} end
if NOW >= tonumber(pending.exp) then return {'refused', 'expired'} end
if pending.sid ~= from or pending.uid ~= pending_uid then return {'refused', 'foreign'} end

-- The re-check: the user's live sessions but the completing one, less the chosen ones
-- (an id that is not a live session of the user is no choice: it is ignored).
local staying, leaving = 0, {}
for _, sid in ipairs(redis.call('ZRANGE', ukey(pending_uid), 0, -1)) do
  if sid ~= ARGV[7] then
    local r = live(sid)
    if r then
      if chosen[sid] then leaving[#leaving + 1] = {sid, r} else staying = staying + 1 end
    end
  end
end
if pending_limit >= 0 and staying >= pending_limit then return {'denied'} end

redis.call('HSET', pending_key, 'used', '1')
local device = '{}'
for i = 12, #ARGV, 2 do if ARGV[i] == 'dev' then device = ARGV[i + 1] end end
local evicted_by = cjson.decode(device)
evicted_by['at'] = NOW
evicted_by['same_browser'] = false
-- Each chosen eviction is recorded as the new session's (its id: login.lua's ARGV[8]).
local evicted_record = {by = cjson.encode(evicted_by), actor = string.format('session:%s', ARGV[8])}
for _, e in ipairs(leaving) do
  finish(e[1], e[2], 'evicted', {by = evicted_by}, evicted_record)
  EVICTED[#EVICTED + 1] = e[1]
end
