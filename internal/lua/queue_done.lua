#!lua
-- queue_done: release a lease whose work is done: remove the item from
-- its :processing list, only while the lease is still held with the given
-- fencing token and the item is still there as leased. KEYS: the
-- :processing list, the table's state hash and lease set. ARGV: the item
-- id and the token. A stale token fails with a STALE error and writes
-- nothing. Returns 'OK'.
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE queue_done: key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want .. '; nothing was written'}, 0)
  end
end

local processing, state, leases = KEYS[1], KEYS[2], KEYS[3]
-- A wrong type of the state hash or the :processing list fails their
-- first command, before anything changed; the lease set is written last,
-- so it is checked.
check_type(leases, 'zset')
local id, token = ARGV[1], ARGV[2]

local rj = redis.call('HMGET', state, 'l' .. id, 'j' .. id)
local rec, json = rj[1], rj[2]
if not rec then
  return redis.error_reply('STALE item ' .. id .. ' is not leased: it was done already, or its lease was taken over and completed; nothing was changed')
end
local tok = string.match(rec, '^(%d+) ')
if tok ~= token then
  return redis.error_reply('STALE item ' .. id .. ' was leased again since token ' .. token ..
    ' was given: that worker must not complete it; nothing was changed')
end
-- Removing nothing changes nothing: the item left (GigAPI's own lease
-- script delivered it again).
if not json or redis.call('LREM', processing, 1, json) == 0 then
  return redis.error_reply('STALE item ' .. id .. ' is no longer in ' .. processing ..
    ' as leased (another worker took it over); nothing was changed')
end
redis.call('HDEL', state, 'l' .. id, 'j' .. id)
redis.call('ZREM', leases, id)
return 'OK'
