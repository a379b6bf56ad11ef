#!lua
-- adopt_item: register a merge or move item that another program (GigAPI's
-- library) put in an :idle list as a published item of indexer's (the
-- records queue_publish writes, queue.go), so that a delete of one of its
-- files withdraws it and 'indexer plan next' can lease it. Atomic: a
-- patch_index call sees the item registered or not at all.
-- KEYS: the :idle list, the table's queue state hash and ready set, the
-- published-path hash and the files: hash of the item's date.
-- ARGV: the item's JSON (as in the list), its id, its group, its time_s,
-- then its paths.
-- Returns 'ok' (registered), 'had' (registered already), 'gone' (no longer
-- in the list: leased meanwhile), 'clash' (another item has its id),
-- 'dead' (it lists a path that is not live: a file deleted since, which
-- GigAPI's library left in the item), or 'twice' (a path another
-- registered item lists).
local idle, state, ready, pub, files = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local json, id, gid, tm = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for _, k in ipairs({{idle, 'list'}, {state, 'hash'}, {ready, 'zset'}, {pub, 'hash'}, {files, 'hash'}}) do
  local t = redis.call('TYPE', k[1])['ok']
  if t ~= 'none' and t ~= k[2] then
    error({err = 'WRONGTYPE adopt_item: key ' .. k[1] .. ' holds a ' .. t .. ', expected a ' .. k[2] .. '; nothing was written'}, 0)
  end
end
local had = redis.call('HGET', state, 'J' .. id)
if had then
  if had == json then return 'had' end
  return 'clash'
end
if not redis.call('LPOS', idle, json) then return 'gone' end
local set = {}
for i = 5, #ARGV do
  local p = ARGV[i]
  if redis.call('HEXISTS', files, p) == 0 then return 'dead' end
  if redis.call('HEXISTS', pub, p) == 1 then return 'twice' end
  set[#set + 1], set[#set + 2] = p, id
end
if #set > 0 then redis.call('HSET', pub, unpack(set)) end
redis.call('HSET', state, 'J' .. id, json, 'G' .. id, gid)
redis.call('ZADD', ready, tm, id)
return 'ok'
