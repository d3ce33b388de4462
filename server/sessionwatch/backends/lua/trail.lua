#!lua flags=allow-cross-slot-keys
-- Reads the audit trail's shards: the N = ARGV[5] names after ARGV[5] (on a Cluster
-- every shard one node serves: passed as arguments, not KEYS, which must share a slot;
-- the flag lets the script touch keys of all this node's slots, docs/audit.md). Runs
-- alone, without the prelude; changes only consumer-group state.
-- ARGV[1] what: 'read' (new records for ARGV[2] group, ARGV[3] consumer),
-- 'reclaim' (the group's records pending longer than ARGV[6 + N] ms, for the consumer),
-- 'latest' (the newest), 'after' (those after ARGV[5 + N + i], the cursor of shard i,
-- or '' from the oldest); ARGV[4] at most this many per shard.
-- Returns {i, {id, {field, value...}}...} for each shard i with records.
local what, group, consumer, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local out = {}
for i = 1, n do
  local key = ARGV[5 + i]
  local entries = nil
  if what == 'read' or what == 'reclaim' then
    if redis.call('EXISTS', key) == 1 then
      local ok, reply = pcall(redis.call, 'XINFO', 'GROUPS', key)
      local found = false
      for _, info in ipairs(ok and reply or {}) do
        for j = 1, #info, 2 do
          if info[j] == 'name' and info[j + 1] == group then found = true end
        end
      end
      if not found then redis.call('XGROUP', 'CREATE', key, group, '0') end
      if what == 'read' then
        local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count,
                                 'STREAMS', key, '>')
        if reply then entries = reply[1][2] end
      else
        entries = redis.call('XAUTOCLAIM', key, group, consumer, ARGV[6 + n], '0-0',
                             'COUNT', count)[2]
      end
    end
  elseif what == 'latest' then
    entries = redis.call('XREVRANGE', key, '+', '-', 'COUNT', count)
  else
    local from = ARGV[5 + n + i]
    if from == '' then from = '-' else from = '(' .. from end
    entries = redis.call('XRANGE', key, from, '+', 'COUNT', count)
  end
  if entries and #entries > 0 then out[#out + 1] = {i, entries} end
end
return out
