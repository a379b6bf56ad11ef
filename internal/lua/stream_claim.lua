#!lua
-- stream_claim: take over a group's entries idle for at least a minimum
-- time (XAUTOCLAIM) and report each one's delivery count, in one atomic
-- call, so no other consumer can claim an entry between the two steps.
-- StreamClaim in stream.go builds KEYS and ARGV and documents them.
--
-- KEYS[1] the stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle (ms), ARGV[4] start
-- id (the cursor), ARGV[5] count.
-- Returns {next start id, {ids deleted from the stream while pending},
-- {id, deliveries, {field, value, ...} or nil}, ...}. Redis >= 7 removes
-- the deleted ids from the group's pending list itself.
local group, consumer = ARGV[1], ARGV[2]
local r = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local out = {r[1], r[3] or {}}
for _, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', KEYS[1], group, e[1], e[1], 1)
  local n = 0
  if p[1] then n = p[1][4] end
  out[#out + 1] = {e[1], n, e[2] or false}
end
return out
