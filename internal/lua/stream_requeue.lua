#!lua
-- stream_requeue: move dead letters back to the stream they came from, in
-- one atomic call: each is added to the stream as a new entry (fields data
-- and ct, plus requeued_from and original_id for tracing) and deleted from
-- the dead-letter stream. StreamRequeue in stream_requeue.go builds KEYS
-- and ARGV and documents them.
--
-- KEYS[1] the stream, KEYS[2] the dead-letter stream.
-- ARGV: the ids of the dead letters to requeue.
--
-- Phases, so that a failing call writes nothing:
--   1. read: the stream exists and is a stream (requeueing into a missing
--      stream would create it without its consumer group), the dead-letter
--      key is a stream (or absent), and each dead letter's fields; ids no
--      longer in the dead-letter stream are skipped, and so are truncated
--      dead letters (data_size larger than their data: only a prefix of
--      the payload was kept), which stay;
--   2. XADD each to the stream, XDEL it from the dead-letter stream.
-- Returns {flat array: per requeued dead letter, its id and its new id;
-- the ids of the truncated dead letters}.
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'stream' then
  return redis.error_reply('ERR stream_requeue: ' .. KEYS[1] .. ' is not a stream (it holds a ' .. t ..
    '); nothing was written. Create it with indexer setup first')
end
t = redis.call('TYPE', KEYS[2])['ok']
if t == 'none' then return {{}, {}} end
if t ~= 'stream' then
  return redis.error_reply('WRONGTYPE stream_requeue: dead-letter key ' .. KEYS[2] .. ' holds a ' .. t ..
    ', not a stream; nothing was written')
end

local found, truncated = {}, {}
for i = 1, #ARGV do
  local r = redis.call('XRANGE', KEYS[2], ARGV[i], ARGV[i])
  if r[1] then
    local f = {}
    local kv = r[1][2]
    for j = 1, #kv, 2 do f[kv[j]] = kv[j + 1] end
    if (tonumber(f['data_size']) or 0) > #(f['data'] or '') then
      truncated[#truncated + 1] = ARGV[i]
    else
      found[#found + 1] = {ARGV[i], f}
    end
  end
end

local out = {}
for _, e in ipairs(found) do
  local id, f = e[1], e[2]
  local new = redis.call('XADD', KEYS[1], '*', 'data', f['data'] or '', 'ct', f['ct'] or '',
    'requeued_from', id, 'original_id', f['original_id'] or '')
  redis.call('XDEL', KEYS[2], id)
  out[#out + 1] = id
  out[#out + 1] = new
end
return {out, truncated}
