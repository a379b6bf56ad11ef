#!lua
-- gc_tombstones: remove up to ARGV[2] tombstones of KEYS[1] whose last
-- touch (score, Unix ms) is before ARGV[1]. Reading and removing in one
-- call means a tombstone touched again meanwhile is never removed.
-- Returns the number removed.
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'zset' then
  return redis.error_reply('WRONGTYPE gc_tombstones: key ' .. KEYS[1] .. ' holds a ' .. t .. ', expected a zset')
end
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #old == 0 then return 0 end
return redis.call('ZREM', KEYS[1], unpack(old))
