-- ARGV[7] id, ARGV[8..] field/value pairs of a new anonymous session.
-- KEYS: the session's names (KeyNames.session_keys).
declare_session(ARGV[7], 1)
local id = ARGV[7]
local r = {}
for i = 8, #ARGV, 2 do r[ARGV[i]] = ARGV[i + 1] end
redis.call('DEL', tkey(id), skey(id))
redis.call('HSET', skey(id), unpack(flat(r)))
keep_until_deadline(id, r)
return 1
