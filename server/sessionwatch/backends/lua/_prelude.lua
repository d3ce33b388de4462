-- Shared by every script (prepended when loading). ARGV[1..7] are the same for all:
-- the names (keys.KeyNames.script_names), now (ms), idle (ms), refresh (ms), tombstone
-- ttl (ms), expiry grace (ms), and the deadline (below). The names of keys and channels
-- come from _names.lua, inserted at the marker below; KEYS are given by each script's
-- header.
local NOW = tonumber(ARGV[2])
local IDLE = tonumber(ARGV[3])
local REFRESH = tonumber(ARGV[4])
local TOMB = tonumber(ARGV[5])
local GRACE = tonumber(ARGV[6])

-- ARGV[7]: the deadline (ms, in Redis' own clock) by which this script must start, else
-- its caller has given up and answered the request as failed: a late script changes
-- nothing (issue 13, defect 2: no phantom takeover after a stall). Taken out of ARGV
-- so that each script's own arguments still start at ARGV[7].
local START_BY = tonumber(table.remove(ARGV, 7))
-- Then the audit context (core/trail.py AuditSettings.script_context), '' when the
-- trail is off: the stream shard of this script's slot, retention, the groups made
-- with a new shard and the actor of the caller's change. Taken out as the deadline is.
local AUDIT_ARG = table.remove(ARGV, 7)
local AUDIT = nil
if AUDIT_ARG and AUDIT_ARG ~= '' then AUDIT = cjson.decode(AUDIT_ARG) end
if redis.replicate_commands then redis.replicate_commands() end -- TIME before writes
local REDIS_MS  -- Redis' own clock (ms): trims the trail by age whatever the caller's
do
  local clock = redis.call('TIME')
  REDIS_MS = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  if REDIS_MS > START_BY then
    return redis.error_reply('LATE script started after its deadline; nothing changed')
  end
end

--@names

-- Sessions a script's head ended before login.lua's body ran (complete.lua's chosen
-- evictions): login.lua answers them first among its evictions.
local EVICTED = {}

local function deadline(r) return math.min(tonumber(r.seen) + IDLE, tonumber(r.abs)) end

local function publish_session(id, event)
  event['session'] = id
  redis.call(PUBLISH, schan(id), cjson.encode(event))
end

-- Append one record to the trail, in this script's step (docs/audit.md): the change
-- and its record happen together or not at all. fields: extra field/values (strings);
-- fields.actor overrides the caller's. A new shard is made with its consumer groups
-- (from its first entry: a reader never misses one).
local function audit(event, id, uid, dev, fields)
  if not AUDIT then return end
  local entry = {'event', event, 'session', id, 'user', uid or '', 'device', dev or '{}',
                 'at', ARGV[2], 'actor', fields.actor or AUDIT.actor}
  for k, v in pairs(fields) do
    if k ~= 'actor' then entry[#entry + 1] = k; entry[#entry + 1] = tostring(v) end
  end
  local fresh = redis.call('EXISTS', AUDIT.stream) == 0
  redis.call('XADD', AUDIT.stream, 'MAXLEN', '~', AUDIT.max, '*', unpack(entry))
  redis.call('XTRIM', AUDIT.stream, 'MINID', '~', REDIS_MS - AUDIT.keep)
  if fresh then
    for _, group in ipairs(AUDIT.groups) do
      redis.call('XGROUP', 'CREATE', AUDIT.stream, group, '0')
    end
  end
end

-- Whether user uid has used this device (browser and OS) and this place within the
-- retention window; remembers both now. nil for an anonymous session or no trail.
-- A user's list of devices is bounded: beyond 256 it starts afresh (all new: safe).
local function novelty(uid, dev)
  if not AUDIT or not uid or uid == '' then return nil end
  local key = user_name('k', uid)
  local d = 'device ' .. tostring(dev.browser) .. '|' .. tostring(dev.os)
  local p = 'place ' .. tostring(dev.place)
  local seen = redis.call('HMGET', key, d, p)
  local since = NOW - AUDIT.keep
  local marks = {new_device = not seen[1] or tonumber(seen[1]) < since,
                 new_place = not seen[2] or tonumber(seen[2]) < since}
  if (marks.new_device or marks.new_place) and redis.call('HLEN', key) >= 256 then
    redis.call('DEL', key)
  end
  redis.call('HSET', key, d, NOW, p, NOW)
  redis.call('PEXPIRE', key, AUDIT.keep)
  return marks
end

local function flag(b) if b then return '1' end return '0' end

local function forget(id, uid)
  redis.call('DEL', skey(id), lkey(id))
  if uid and uid ~= '' then redis.call('ZREM', ukey(uid), id) end
end

-- End remember-me family fid (core/remember.py); returns its last session's id. A family
-- has at most one live session (a restore replaces the one before): ending one ends it.
local function end_family(fid, uid)
  local sid = redis.call('HGET', fkey(fid), 'sid')
  redis.call('DEL', fkey(fid))
  if uid and uid ~= '' then redis.call('ZREM', ufkey(uid), fid) end
  return sid
end

-- The family a sign-in keeps while replacing its session (remember.lua); nil otherwise.
local KEEP_FAMILY = nil

-- End the family session id was born of (every end but expiry: docs/policies.md).
local function end_family_of(id, uid)
  local fid = redis.call('HGET', skey(id), 'fam')
  if fid and fid ~= KEEP_FAMILY then end_family(fid, uid) end
end

-- Forget record r of session id, leave its tombstone, tell its tabs and record it
-- (record: the trail's extra fields).
local function finish(id, r, reason, event, record)
  if reason ~= 'expired' then end_family_of(id, r.uid) end
  forget(id, r.uid)
  redis.call('SET', tkey(id), reason, 'PX', TOMB)
  event['type'] = reason
  publish_session(id, event)
  audit(reason, id, r.uid, r.dev, record)
end

-- The live record as a table, or nil and why (false: unknown). Expires it if due.
local function live(id)
  local flat = redis.call('HGETALL', skey(id))
  if #flat == 0 then
    local reason = redis.call('GET', tkey(id))
    return nil, reason or false
  end
  local r = {}
  for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
  if NOW >= deadline(r) then
    finish(id, r, 'expired', {}, {actor = 'system'})
    return nil, 'expired'
  end
  return r, nil
end

local function flat(r)
  local out = {}
  for k, v in pairs(r) do out[#out + 1] = k; out[#out + 1] = v end
  return out
end

local function keep_until_deadline(id, r)
  redis.call('PEXPIRE', skey(id), deadline(r) - NOW + GRACE)
end

-- Refresh the idle deadline (seen = now) and tell the session's tabs; returns 1.
local function touch(id, r)
  r.seen = ARGV[2]
  redis.call('HSET', skey(id), 'seen', r.seen)
  keep_until_deadline(id, r)
  publish_session(id, {type = 'extended', expires_at = deadline(r)})
  return 1
end
