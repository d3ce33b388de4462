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
if redis.replicate_commands then redis.replicate_commands() end -- TIME before writes
do
  local clock = redis.call('TIME')
  if tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) > START_BY then
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

-- Forget a record, leave its tombstone and tell its tabs.
local function finish(id, uid, reason, event)
  if reason ~= 'expired' then end_family_of(id, uid) end
  forget(id, uid)
  redis.call('SET', tkey(id), reason, 'PX', TOMB)
  event['type'] = reason
  publish_session(id, event)
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
    finish(id, r.uid, 'expired', {})
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
