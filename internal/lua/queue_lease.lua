#!lua
-- queue_lease: lease a published merge or move item (queue.go): take it
-- out of its :idle list, push it to its :processing list with time_s = the
-- lease expiry, as GigAPI's lease script does, and record the lease with a
-- new fencing token. KEYS: the table's state hash, ready set and lease
-- set, the item's :processing list, its :idle list and its date's
-- published-path hash. ARGV: the item id, now and the lease expiry (Unix
-- s). Returns {'ok', json, token, id}, or {'gone'} when the item is no
-- longer there (leased meanwhile, by GigAPI's own lease script too; then
-- its records are removed).
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE queue_lease: key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want .. '; nothing was written'}, 0)
  end
end

local state, ready, leases, processing, idle, pub = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
-- The state hash is read before any write (a wrong type fails there); the
-- others are written, so checked.
check_type(ready, 'zset')
check_type(leases, 'zset')
check_type(processing, 'list')
check_type(idle, 'list')
check_type(pub, 'hash')
local id, now, expiry = ARGV[1], tonumber(ARGV[2]), ARGV[3]

local json = redis.call('HGET', state, 'J' .. id)
local gid = redis.call('HGET', state, 'G' .. id)
if not json or not gid then
  redis.call('ZREM', ready, id)
  return {'gone'}
end
local score = redis.call('ZSCORE', ready, id)
if score and tonumber(score) > now then return {'notdue'} end
local ok, item = pcall(cjson.decode, json)
if not ok or type(item) ~= 'table' then
  error({err = 'CORRUPT queue_lease: published item ' .. id .. ' in ' .. state .. ' is not JSON; nothing was written'}, 0)
end
local tok = redis.call('HGET', state, 'tok')
if tok and not string.match(tok, '^%d+$') then
  error({err = 'CORRUPT queue_lease: field tok of ' .. state .. ' is not an integer; nothing was written'}, 0)
end
tok = tostring((tonumber(tok) or 0) + 1)

local ps = item.paths or {item.path_from}
local function cleanup()
  for j = 1, #ps, 4000 do redis.call('HDEL', pub, unpack(ps, j, math.min(j + 3999, #ps))) end
  redis.call('HDEL', state, 'J' .. id, 'G' .. id)
  redis.call('ZREM', ready, id)
end
if redis.call('LREM', idle, 1, json) == 0 then
  cleanup()
  return {'gone'}
end
cleanup()
-- The item as published, with the lease expiry as time_s (no cjson
-- re-encoding: sizes above 2^53 would not survive it).
local leased = string.gsub(json, '"time_s":%d+', '"time_s":' .. expiry, 1)
redis.call('RPUSH', processing, leased)
redis.call('HSET', state, 'tok', tok, 'l' .. id, tok .. ' ' .. expiry .. ' ' .. gid, 'j' .. id, leased)
redis.call('ZADD', leases, expiry, id)
return {'ok', leased, tok, id}
