-- Key and channel names on Redis Cluster. Every key and channel a script touches carries
-- the hash tag of KEYS[1] (the key the client routed the call by), so the script is
-- slot-local: a session id "T.rest" has tag T (its user's, see tokens.user_tag), an
-- untagged (anonymous) id is its own tag; a user's index and channel take the tag of
-- the script's slot. A name of any other slot is refused before any write (fail closed).
-- Channels are shard channels: SPUBLISH reaches the subscribers of this slot only.
local PUBLISH = 'SPUBLISH'
local TAG = string.match(KEYS[1] or '', '{([^}]*)}')
if not TAG or TAG == '' then return redis.error_reply('sessionwatch: KEYS[1] carries no hash tag') end
local function slotted(id)
  local tag, rest = string.match(id, '^([^.]*)(%..*)$')
  if not tag then tag, rest = id, '' end
  if tag ~= TAG then error('sessionwatch: ' .. id .. ' is not in the slot of ' .. KEYS[1]) end
  return '{' .. tag .. '}' .. rest
end
local function skey(id) return P .. 's:' .. slotted(id) end
local function ukey(uid) return P .. 'u:{' .. TAG .. '}' .. uid end
local function tkey(id) return P .. 't:' .. slotted(id) end
local function lkey(id) return P .. 'l:' .. slotted(id) end
local function schan(id) return P .. 'c:s:' .. slotted(id) end
local function uchan(uid) return P .. 'c:u:{' .. TAG .. '}' .. uid end
