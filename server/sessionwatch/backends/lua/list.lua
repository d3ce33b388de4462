-- ARGV[7] user. Returns {id, fields...} per live session, pruning dead members.
-- KEYS: the user's names (KeyNames.user_keys); the sessions in the index are derived.
declare_user(ARGV[7], 1)
local uid = ARGV[7]
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', ukey(uid), 0, -1)) do
  local r = live(sid)
  if r then
    r.data = nil
    local entry = {sid}
    for _, v in ipairs(flat(r)) do entry[#entry + 1] = v end
    out[#out + 1] = entry
  else
    redis.call('ZREM', ukey(uid), sid)
  end
end
return out
