-- Key and channel names. backends/keys.py is the one place they are spelled: every name
-- a script knows before it runs arrives in KEYS, declared below (declare_session,
-- declare_user) in the order KeyNames.session_keys / user_keys give them.
-- A script learns some names only while it runs: the other sessions found in a user's
-- index (login, end_user, list) and the user of a record it expires. Those are derived
-- here, and only here, from ARGV[1] (KeyNames.script_names: the heads of the names, the
-- tag rule and the publish command), by the rule keys.py applies (tests check both agree).
-- On a Redis Cluster a derived name carries the hash tag of KEYS[1], the key the client
-- routed the call by, so it is in the script's slot: Redis lets a script touch keys it did
-- not declare in its own slot. A session id of another slot is refused before any write
-- (fail closed). Channels are then shard channels: SPUBLISH reaches this slot's shard.
local NAMES = cjson.decode(ARGV[1])
local PUBLISH = NAMES.publish
if PUBLISH ~= 'PUBLISH' and PUBLISH ~= 'SPUBLISH' then
  return redis.error_reply('sessionwatch: unknown publish command')
end
local TAG = nil
if NAMES.tagged then
  TAG = string.match(KEYS[1] or '', '{([^}]*)}')
  if not TAG or TAG == '' then return redis.error_reply('sessionwatch: KEYS[1] carries no hash tag') end
end

-- What follows a head for a session id / a user id (keys.py: _of_session, _of_user).
local function of_session(id)
  if not TAG then return id end
  local tag, rest = string.match(id, '^([^.]*)(%..*)$')
  if not tag then tag, rest = id, '' end
  if tag ~= TAG then error('sessionwatch: ' .. id .. ' is not in the slot of ' .. KEYS[1]) end
  return '{' .. tag .. '}' .. rest
end
local function of_user(uid)
  if not TAG then return uid end
  return '{' .. TAG .. '}' .. uid
end

local SESSIONS, USERS = {}, {}  -- names Python passed in KEYS, by id

-- KEYS[first..first+3] are session id's record, tombstone, live sockets and channel.
local function declare_session(id, first)
  SESSIONS[id] = {s = KEYS[first], t = KEYS[first + 1], l = KEYS[first + 2], cs = KEYS[first + 3]}
end

-- KEYS[first], KEYS[first+1] are user uid's index and channel.
local function declare_user(uid, first)
  USERS[uid] = {u = KEYS[first], cu = KEYS[first + 1]}
end

local function session_name(kind, id)
  local declared = SESSIONS[id]
  if declared then return declared[kind] end
  return NAMES[kind] .. of_session(id)
end

local function user_name(kind, uid)
  local declared = USERS[uid]
  if declared and declared[kind] then return declared[kind] end
  return NAMES[kind] .. of_user(uid)
end

local function skey(id) return session_name('s', id) end
local function tkey(id) return session_name('t', id) end
local function lkey(id) return session_name('l', id) end
local function schan(id) return session_name('cs', id) end
local function ukey(uid) return user_name('u', uid) end
local function uchan(uid) return user_name('cu', uid) end
