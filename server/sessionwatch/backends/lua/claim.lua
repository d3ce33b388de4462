-- ARGV[7] id, ARGV[8] '1' when claims are exclusive, ARGV[9] claimer device (JSON).
-- Returns {'ok', gen, tab key, expires_at} or {'gone', reason}.
local id = ARGV[7]
local r, reason = live(id)
if not r then return {'gone', reason or ''} end
local gen = redis.call('HINCRBY', skey(id), 'gen', 1)
redis.call('HSET', skey(id), 'cby', ARGV[9])
if ARGV[8] == '1' then
  publish_session(id, {type = 'superseded', gen = gen, by = cjson.decode(ARGV[9])})
end
return {'ok', gen, r.tk, deadline(r)}
