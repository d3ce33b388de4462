-- ARGV[7] user, ARGV[8] the cursor's created (ms) or '' for the first page, ARGV[9] the
-- cursor's public id, ARGV[10] page size, ARGV[11] most index members to examine.
-- Returns {next created, next id, {id, fields...}...}: at most a page of the live
-- sessions after the cursor in the index's order (created, then id), pruning dead
-- members met; the next cursor is '', '' when no member follows the last examined.
-- One call reads a bounded number of records however many the user holds (issue 22).
-- KEYS: the user's names (KeyNames.user_keys); the sessions in the index are derived.
declare_user(ARGV[7], 1)
local index = ukey(ARGV[7])
local size, scan = tonumber(ARGV[10]), tonumber(ARGV[11])

-- a <= b by bytes, the index's order for equal scores (Lua's '<' follows the locale).
local function bytes_le(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a <= #b
end

-- How many members come at or before (created, id), whether or not id is a member: a
-- cursor stays valid after its session ended.
local function position(created, id)
  local count = redis.call('ZCOUNT', index, '-inf', '(' .. created)
  for _, sid in ipairs(redis.call('ZRANGEBYSCORE', index, created, created)) do
    if bytes_le(sid, id) then count = count + 1 end
  end
  return count
end

local start = 0
if ARGV[8] ~= '' then start = position(ARGV[8], ARGV[9]) end
local members = redis.call('ZRANGE', index, start, start + scan - 1, 'WITHSCORES')
local out = {'', ''}
local last_id, last_created = nil, nil
for i = 1, #members, 2 do
  local sid = members[i]
  last_id, last_created = sid, members[i + 1]
  local r = live(sid)
  if r then
    r.data = nil
    local entry = {sid}
    for _, v in ipairs(flat(r)) do entry[#entry + 1] = v end
    out[#out + 1] = entry
    if #out - 2 == size then break end
  else
    redis.call('ZREM', index, sid)
  end
end
if last_id and position(last_created, last_id) < redis.call('ZCARD', index) then
  out[1], out[2] = last_created, last_id
end
return out
