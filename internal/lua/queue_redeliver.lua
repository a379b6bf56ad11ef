#!lua
-- queue_redeliver: deliver an expired lease again: move its item to the
-- end of its :processing list with the new lease expiry as time_s, under a
-- new fencing token (so the previous holder's token is stale). KEYS: the
-- :processing list, the table's state hash and lease set. ARGV: the item
-- id, now and the new expiry (Unix s). Returns {'ok', json, token, id},
-- {'notexpired'}, or {'gone'} when the item is no longer leased as
-- recorded (then the record is removed).
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE queue_redeliver: key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want .. '; nothing was written'}, 0)
  end
end

local processing, state, leases = KEYS[1], KEYS[2], KEYS[3]
-- The state hash is read before any write (a wrong type fails there); the
-- others are written, so checked.
check_type(processing, 'list')
check_type(leases, 'zset')
local id, now, expiry = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local rec = redis.call('HGET', state, 'l' .. id)
if not rec then
  redis.call('ZREM', leases, id)
  return {'gone'}
end
local exp, gid = string.match(rec, '^%d+ (%d+) (%S+)$')
if not gid then
  error({err = 'CORRUPT queue_redeliver: field l' .. id .. ' of ' .. state .. ' is not a lease record; nothing was written'}, 0)
end
if tonumber(exp) > now then return {'notexpired'} end
local tok = redis.call('HGET', state, 'tok')
if tok and not string.match(tok, '^%d+$') then
  error({err = 'CORRUPT queue_redeliver: field tok of ' .. state .. ' is not an integer; nothing was written'}, 0)
end
tok = tostring((tonumber(tok) or 0) + 1)
local old = redis.call('HGET', state, 'j' .. id)

if not old or redis.call('LREM', processing, 1, old) == 0 then
  -- GigAPI's own lease script delivered it again, or it was removed.
  redis.call('HDEL', state, 'l' .. id, 'j' .. id)
  redis.call('ZREM', leases, id)
  return {'gone'}
end
local json = string.gsub(old, '"time_s":[-+.%deE]+', '"time_s":' .. expiry, 1)
redis.call('RPUSH', processing, json)
redis.call('HSET', state, 'tok', tok, 'l' .. id, tok .. ' ' .. expiry .. ' ' .. gid, 'j' .. id, json)
redis.call('ZADD', leases, expiry, id)
return {'ok', json, tok, id}
