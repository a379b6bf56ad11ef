#!lua
-- (shared.lua's size_rows and idname come before this line.)
-- queue_publish: publish due items into GigAPI's :idle lists (queue.go
-- documents the records). A merge item becomes GigAPI's merge item of its
-- live paths (sorted) and their sizes; a move batch becomes one move item
-- per live path. Items are published only while pending and due; an item
-- none of whose paths is still live is removed.
-- KEYS: the table's state hash, pending and ready sets, then the keys the
-- items name. ARGV: now (Unix s), the number of items, then per item: its
-- seq; the 1-based indexes (among the keys after the third) of the files
-- hash, chunk list and published-path hash of its date and of its :idle
-- list; and for a move batch the pieces of its items' JSON (id prefix,
-- the middle up to path_from, the part after it up to path_to, the end),
-- the seed of path_to (see MovePathTo in internal/index) and layer_from
-- ('' pieces for a merge item). Returns the number of items pushed and
-- the number of pending items done with (published, empty, or without a
-- record: all leave the pending set).
-- Commands are batched across items: the cost is per item and per path,
-- not per command.
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE queue_publish: key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want .. '; nothing was written'}, 0)
  end
end

local state, pending, ready = KEYS[1], KEYS[2], KEYS[3]
check_type(state, 'hash')
check_type(pending, 'zset')
check_type(ready, 'zset')
local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local checked = {}
local function key(i, want)
  local k = KEYS[3 + tonumber(i)]
  if not checked[k] then
    check_type(k, want)
    checked[k] = true
  end
  return k
end

local CHUNK = 4000
-- call runs cmd key with list[1..#list] as arguments, in chunks, and
-- returns the concatenated array replies.
local function call(cmd, k, list)
  local out = {}
  for i = 1, #list, CHUNK do
    local r = redis.call(cmd, k, unpack(list, i, math.min(i + CHUNK - 1, #list)))
    if type(r) == 'table' then
      for j = 1, #r do out[#out + 1] = r[j] end
    end
  end
  return out
end

-- chunks returns, per item seq in chunk list k (read once), its chunks
-- and their positions (the 0-based index of the seq before each).
local lists = {}
local function chunks(k)
  local by = lists[k]
  if not by then
    by = {}
    local l = redis.call('LRANGE', k, 0, -1)
    for j = 1, #l - 1, 2 do
      local cs = by[l[j]]
      if not cs then
        cs = {at = {}}
        by[l[j]] = cs
      end
      cs[#cs + 1] = l[j + 1]
      cs.at[#cs.at + 1] = j - 1
    end
    lists[k] = by
  end
  return by
end

-- The items still pending and due.
local seqs, fields = {}, {}
for i = 1, n do
  seqs[i] = ARGV[3 + 11 * (i - 1)]
  fields[i] = 'i' .. seqs[i]
end
local recs = call('HMGET', state, fields)
local scores = call('ZMSCORE', pending, seqs)

-- Per item its paths; then the live ones, one HMGET per files hash.
local ops, byfile = {}, {}
local orphans = {}
for i = 1, n do
  local b = 3 + 11 * (i - 1)
  local rec, score = recs[i], scores[i]
  if not rec and score then
    orphans[#orphans + 1] = seqs[i] -- pending without a record: drop it
  elseif rec and score and tonumber(score) <= now then
    local kind, t, id, gid = string.match(rec, '^([mv]) (%d+) (%S+) (%S+)$')
    if not kind then
      error({err = 'CORRUPT queue_publish: field i' .. seqs[i] .. ' of ' .. state .. ' is not a queue item record; nothing was written'}, 0)
    end
    local op = {seq = seqs[i], kind = kind, t = t, id = id, gid = gid, b = b,
      fkey = key(ARGV[b + 1], 'hash'), ckey = key(ARGV[b + 2], 'list'), pkey = key(ARGV[b + 3], 'hash'),
      ikey = key(ARGV[b + 4], 'list'), ps = {}}
    op.cs = chunks(op.ckey)[op.seq] or {at = {}}
    for _, c in ipairs(op.cs) do
      for p in string.gmatch(c, '[^\n]+') do op.ps[#op.ps + 1] = p end
    end
    local f = byfile[op.fkey]
    if not f then
      f = {}
      byfile[op.fkey] = f
    end
    for _, p in ipairs(op.ps) do f[#f + 1] = p end
    ops[#ops + 1] = op
  end
end
local sizes = {}
for k, ps in pairs(byfile) do
  local es = call('HMGET', k, ps)
  for j = 1, #ps do
    if es[j] then sizes[ps[j]] = (size_rows(es[j])) end
  end
end

-- The items' JSON.
local push, pub, jg, zadd, hdel, zrem, lfields = {}, {}, {}, {}, {}, {}, {}
local count = 0
for _, op in ipairs(ops) do
  local live, z = {}, 0
  for _, p in ipairs(op.ps) do
    if sizes[p] then
      live[#live + 1] = p
      z = z + sizes[p]
    end
  end
  table.sort(live)
  local items = {}
  if #live > 0 and op.kind == 'm' then
    items[1] = {op.id, '{"id":"' .. op.id .. '","time_s":' .. op.t .. ',"paths":["' .. table.concat(live, '","') ..
      '"],"size":' .. string.format('%d', z) .. '}', live}
  elseif op.kind == 'v' then
    local b = op.b
    local pre, mid, to, tail, seed, layer = ARGV[b + 5], ARGV[b + 6], ARGV[b + 7], ARGV[b + 8], ARGV[b + 9], ARGV[b + 10]
    for _, p in ipairs(live) do
      local x = redis.sha1hex(seed .. p)
      local dest = string.sub(p, 1, 24) .. string.sub(x, 1, 8) .. '-' .. string.sub(x, 9, 12) .. '-' ..
        string.sub(x, 13, 16) .. '-' .. string.sub(x, 17, 20) .. '-' .. string.sub(x, 21, 32) ..
        string.match(p, '%.%d+%.parquet$')
      local vid = pre .. idname(string.sub(p, 25, -9))
      items[#items + 1] = {vid, '{"id":"' .. vid .. mid .. p .. '","layer_from":"' .. layer .. to .. dest .. tail, {p}}
    end
  end
  for _, it in ipairs(items) do
    local l = push[op.ikey] or {}
    push[op.ikey] = l
    l[#l + 1] = it[2]
    local h = pub[op.pkey] or {}
    pub[op.pkey] = h
    for _, p in ipairs(it[3]) do
      h[#h + 1] = p
      h[#h + 1] = it[1]
    end
    jg[#jg + 1], jg[#jg + 2], jg[#jg + 3], jg[#jg + 4] = 'J' .. it[1], it[2], 'G' .. it[1], op.gid
    zadd[#zadd + 1], zadd[#zadd + 2] = op.t, it[1]
    count = count + 1
  end
  hdel[#hdel + 1], zrem[#zrem + 1] = 'i' .. op.seq, op.seq
  if op.kind == 'm' then lfields[#lfields + 1] = 'L' .. op.gid end
end
-- The last-item pointers naming a published item go: a patch_index running
-- behind on another clock must not add files to it.
local lvals = #lfields > 0 and call('HMGET', state, lfields) or {}

-- Writes.
for k, l in pairs(push) do call('RPUSH', k, l) end
for k, h in pairs(pub) do call('HSET', k, h) end
if #jg > 0 then call('HSET', state, jg) end
if #zadd > 0 then call('ZADD', ready, zadd) end
local li = 0
for _, op in ipairs(ops) do
  -- The chunks are blanked, then removed in one pass per list.
  for _, at in ipairs(op.cs.at) do
    redis.call('LSET', op.ckey, at, '')
    redis.call('LSET', op.ckey, at + 1, '')
  end
  if op.kind == 'm' then
    li = li + 1
    local lv = lvals[li]
    if lv and string.len(lv) == 24 and struct.unpack('<d', lv) == tonumber(op.seq) then
      hdel[#hdel + 1] = lfields[li]
    end
  end
end
for k in pairs(lists) do redis.call('LREM', k, 0, '') end
if #hdel > 0 then call('HDEL', state, hdel) end
for _, s in ipairs(orphans) do zrem[#zrem + 1] = s end
if #zrem > 0 then call('ZREM', pending, zrem) end
return {count, #zrem}
