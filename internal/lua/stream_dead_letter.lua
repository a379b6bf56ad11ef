#!lua
-- stream_dead_letter: move entries of a consumer group to a dead-letter
-- stream and acknowledge them, in one atomic call. StreamDeadLetter in
-- stream.go builds KEYS and ARGV and documents them.
--
-- KEYS[1] the stream, KEYS[2] the dead-letter stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] now (Unix ms), ARGV[4] the
-- dead-letter stream's approximate length limit (0: none), then seven
-- values per entry: id, data, ct, reason, deliveries, size, sha256.
--
-- Phases, so that a failing call writes nothing:
--   1. read: the dead-letter key is a stream (or absent), the group exists
--      (NOGROUP otherwise), and which entries are still pending in the
--      group; an entry acknowledged meanwhile (by another consumer that
--      took it over) is skipped, so it is never dead-lettered twice;
--   2. XADD one dead letter per pending entry (trimming the dead-letter
--      stream to about ARGV[4] entries, the oldest first);
--   3. XACK them.
-- Returns the number of entries moved.
local t = redis.call('TYPE', KEYS[2])['ok']
if t ~= 'none' and t ~= 'stream' then
  return redis.error_reply('WRONGTYPE stream_dead_letter: dead-letter key ' .. KEYS[2] .. ' holds a ' .. t ..
    ', not a stream; nothing was written. Rename or delete that key, or configure another dead-letter stream')
end
local group, consumer, now, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
redis.call('XPENDING', KEYS[1], group, '-', '+', 1) -- raises NOGROUP for a missing stream or group

local pending = {}
for i = 5, #ARGV, 7 do
  local p = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)
  if p[1] then pending[#pending + 1] = i end
end

local ids = {}
local function add(...)
  if maxlen == '0' then return redis.call('XADD', KEYS[2], '*', ...) end
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', ...)
end
for _, i in ipairs(pending) do
  add(
    'data', ARGV[i + 1], 'ct', ARGV[i + 2], 'reason', ARGV[i + 3],
    'original_id', ARGV[i], 'deliveries', ARGV[i + 4],
    'data_size', ARGV[i + 5], 'data_sha256', ARGV[i + 6],
    'stream', KEYS[1], 'group', group, 'consumer', consumer, 'dead_lettered_at', now)
  ids[#ids + 1] = ARGV[i]
end

local CHUNK = 4000 -- stays under Lua's unpack limit (LUAI_MAXCSTACK 8000)
for first = 1, #ids, CHUNK do
  redis.call('XACK', KEYS[1], group, unpack(ids, first, math.min(first + CHUNK - 1, #ids)))
end
return #ids
