-- A restore from a remember-me token (core/remember.py; docs/policies.md, "Remember-me").
-- ARGV[7] family id, ARGV[8] the presented generation, ARGV[9] its hash, ARGV[10] the hash
-- of its successor, ARGV[11] the grace window (ms); taken out of ARGV, after which ARGV
-- and KEYS[1..10] are login.lua's (old id: the family's last session), whose body runs as
-- login_step() (prepended when loading: redis.py). KEYS[11], KEYS[12]: the family's names
-- (KeyNames.remember_keys). Returns {'rotated', evicted ids...}, {'again'}, {'gone'},
-- {'unknown'}, {'denied'}, {'busy'} (the family moved on since the caller read it), or
-- {'reuse', its session id or ''}: then the family and its session have ended.
local fid = table.remove(ARGV, 7)
local presented = tonumber(table.remove(ARGV, 7))
local hash = table.remove(ARGV, 7)
local successor = table.remove(ARGV, 7)
local grace = tonumber(table.remove(ARGV, 7))
local old_sid, new_sid, uid = ARGV[7], ARGV[8], ARGV[9]
SESSIONS[fid] = {f = KEYS[11]}
USERS[uid] = {uf = KEYS[12]}
local flat_family = redis.call('HGETALL', fkey(fid))
if #flat_family == 0 then return {'unknown'} end
local f = {}
for i = 1, #flat_family, 2 do f[flat_family[i]] = flat_family[i + 1] end
if f.uid ~= uid then return {'unknown'} end
if NOW >= tonumber(f.exp) then  -- its lifetime is over
  end_family(fid, uid)
  return {'unknown'}
end
local gen = tonumber(f.gen)

if presented == gen and hash == f.cur then
  if f.sid ~= old_sid then return {'busy'} end
  KEEP_FAMILY = fid  -- the family's last session is replaced, the family goes on
  local reply = login_step()
  KEEP_FAMILY = nil
  if reply[1] ~= 'ok' then return reply end
  redis.call('HSET', fkey(fid), 'gen', gen + 1, 'cur', successor, 'prev', hash,
    'prev_until', NOW + grace, 'sid', new_sid)
  reply[1] = 'rotated'
  return reply
end

-- The token just rotated away, within the grace window: its successor is the current
-- token (derived, so the same for every request that presents it) and its session is
-- the one that rotation created.
if presented == gen - 1 and hash == f.prev and NOW < tonumber(f.prev_until)
    and successor == f.cur and new_sid == f.sid then
  declare_session(new_sid, 1)
  if live(new_sid) then return {'again'} end
  return {'gone'}
end

-- Any other token of the family was issued by this server (it is signed) and used
-- before: a stolen copy and its owner both presented it. End the family and its session.
local sid = end_family(fid, uid)
if sid and sid ~= '' then
  if sid == old_sid then declare_session(sid, 7) end
  local r = live(sid)
  if r then
    finish(sid, r, 'revoked', {reason = 'token_reuse'}, {reason = 'token_reuse', actor = 'system'})
    return {'reuse', sid}
  end
end
return {'reuse', ''}
