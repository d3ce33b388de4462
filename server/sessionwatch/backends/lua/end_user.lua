-- ARGV[7] user, ARGV[8] id to keep or '', ARGV[9] the app's reason code.
-- Returns how many live sessions were revoked. Every remember-me family of the user ends
-- too (a family whose session expired has none left to end it), but the kept session's.
-- KEYS: the user's names (KeyNames.user_keys); the sessions in the index are derived.
declare_user(ARGV[7], 1)
local uid, keep = ARGV[7], ARGV[8]
local count = 0
for _, sid in ipairs(redis.call('ZRANGE', ukey(uid), 0, -1)) do
  if sid ~= keep then
    local r = live(sid)
    if r then
      finish(sid, r, 'revoked', {reason = ARGV[9]}, {reason = ARGV[9]})
      count = count + 1
    else
      redis.call('ZREM', ukey(uid), sid)
    end
  end
end
local kept = false
if keep ~= '' and redis.call('ZSCORE', ukey(uid), keep) then
  kept = redis.call('HGET', skey(keep), 'fam')
end
for _, fid in ipairs(redis.call('ZRANGE', ufkey(uid), 0, -1)) do
  if fid ~= kept then end_family(fid, uid) end
end
return count
