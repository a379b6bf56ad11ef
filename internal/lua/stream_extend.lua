#!lua
-- stream_extend: renew the lease of entries a consumer still owns: reset
-- their idle time (XCLAIM ... JUSTID, which does not count a delivery), so
-- no other consumer claims them while they are being applied. Entries no
-- longer pending, or owned by another consumer since, are left alone.
-- StreamExtend in stream.go builds KEYS and ARGV and documents them.
--
-- KEYS[1] the stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3..] entry ids.
-- Returns the ids renewed.
local group, consumer = ARGV[1], ARGV[2]
local owned = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == consumer then owned[#owned + 1] = ARGV[i] end
end
local out = {}
local CHUNK = 4000 -- stays under Lua's unpack limit (LUAI_MAXCSTACK 8000)
for first = 1, #owned, CHUNK do
  local args = {KEYS[1], group, consumer, 0}
  for i = first, math.min(first + CHUNK - 1, #owned) do args[#args + 1] = owned[i] end
  args[#args + 1] = 'JUSTID'
  for _, id in ipairs(redis.call('XCLAIM', unpack(args))) do out[#out + 1] = id end
end
return out
