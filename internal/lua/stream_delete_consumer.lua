#!lua
-- stream_delete_consumer: delete a consumer from a group if, and only if,
-- it owns no pending entry and has been idle at least a minimum time,
-- checked and done in one atomic call: a consumer that became active or
-- took an entry meanwhile is kept. StreamDeleteConsumer in stream.go builds
-- KEYS and ARGV and documents them.
--
-- KEYS[1] the stream.
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle (ms).
-- Returns 1 if the consumer was deleted, else 0.
local group, consumer = ARGV[1], ARGV[2]
if #redis.call('XPENDING', KEYS[1], group, '-', '+', 1, consumer) > 0 then return 0 end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], group)) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] == consumer then
    if tonumber(f['idle']) < tonumber(ARGV[3]) then return 0 end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, consumer)
    return 1
  end
end
return 0
