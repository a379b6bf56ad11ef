#!lua
-- queue_lease_drop: lease the head of a drop :idle list when it is due,
-- as GigAPI's lease script does (LPOP, then RPUSH to :processing with
-- time_s = the lease expiry), and record the lease with a new fencing
-- token. KEYS: the :idle list, the :processing list, the table's state
-- hash and lease set. ARGV: now and the lease expiry (Unix s), the queue's
-- group ("d|layer|writer"). Returns {'ok', json, token, id}, {'empty'} or
-- {'notdue'}.
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE queue_lease_drop: key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want .. '; nothing was written'}, 0)
  end
end

local idle, processing, state, leases = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- :idle and the state hash are read before any write (a wrong type fails
-- there); the others are written, so checked.
check_type(processing, 'list')
check_type(leases, 'zset')
local now, expiry, gid = tonumber(ARGV[1]), ARGV[2], ARGV[3]

local head = redis.call('LINDEX', idle, 0)
if not head then return {'empty'} end
-- indexer's drop items start with the id and end with time_s; others
-- (GigAPI's library's) are decoded.
local item = {}
item.id = string.match(head, '^{"id":"([^"]+)"')
item.time_s = string.match(head, '"time_s":(%d+)}$')
if not item.id or not item.time_s then
  local ok, it = pcall(cjson.decode, head)
  if not ok or type(it) ~= 'table' or type(it.id) ~= 'string' or tonumber(it.time_s) == nil then
    error({err = 'CORRUPT queue_lease_drop: the head of ' .. idle .. ' is not a drop item; nothing was written'}, 0)
  end
  item = it
end
if tonumber(item.time_s) > now then return {'notdue'} end
local tok = redis.call('HGET', state, 'tok')
if tok and not string.match(tok, '^%d+$') then
  error({err = 'CORRUPT queue_lease_drop: field tok of ' .. state .. ' is not an integer; nothing was written'}, 0)
end
tok = tostring((tonumber(tok) or 0) + 1)
-- The item as it is, with the lease expiry as time_s (no cjson re-encoding).
local json = string.gsub(head, '"time_s":[-+.%deE]+', '"time_s":' .. expiry, 1)

redis.call('LPOP', idle)
redis.call('RPUSH', processing, json)
redis.call('HSET', state, 'tok', tok, 'l' .. item.id, tok .. ' ' .. expiry .. ' ' .. gid, 'j' .. item.id, json)
redis.call('ZADD', leases, expiry, item.id)
return {'ok', json, tok, item.id}
