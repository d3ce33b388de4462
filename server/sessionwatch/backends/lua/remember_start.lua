-- ARGV[7] session id, ARGV[8] its user, ARGV[9] family id, ARGV[10] the first token's
-- hash, ARGV[11] the family's lifetime (ms), ARGV[12] the most families a user keeps
-- (the oldest beyond end; lapsed ones are pruned: the user's families stay bounded). Starts remember-me family for a live session
-- of that user (ending the family it had). Returns 1, or 0 when the session is not live
-- (nothing stored: a revocation between the sign-in and this step leaves no family).
-- KEYS: the session's names (KeyNames.session_keys), then the family's (remember_keys).
local id, uid, fid = ARGV[7], ARGV[8], ARGV[9]
declare_session(id, 1)
local r = live(id)
if not r or r.uid ~= uid then return 0 end
SESSIONS[fid] = {f = KEYS[5]}
USERS[r.uid] = {uf = KEYS[6]}
end_family_of(id, r.uid)
local lifetime = tonumber(ARGV[11])
redis.call('HSET', fkey(fid), 'uid', r.uid, 'sid', id, 'gen', 1, 'cur', ARGV[10], 'prev', '',
  'prev_until', 0, 'exp', NOW + lifetime)
redis.call('PEXPIRE', fkey(fid), lifetime + GRACE)  -- the key outlives exp (a late caller)
redis.call('ZREMRANGEBYSCORE', ufkey(r.uid), '-inf', NOW)  -- lapsed (scored by their end)
redis.call('ZADD', ufkey(r.uid), NOW + lifetime, fid)
local excess = redis.call('ZCARD', ufkey(r.uid)) - tonumber(ARGV[12])
if excess > 0 then
  for _, oldest in ipairs(redis.call('ZRANGE', ufkey(r.uid), 0, excess - 1)) do
    end_family(oldest, r.uid)
  end
end
if redis.call('PTTL', ufkey(r.uid)) < lifetime + GRACE then
  redis.call('PEXPIRE', ufkey(r.uid), lifetime + GRACE)
end
redis.call('HSET', skey(id), 'fam', fid)
return 1
