#!lua
-- patch_index: apply a batch of file operations to the GigAPI index in one
-- atomic call. PatchIndex in patch_index.go builds KEYS and ARGV and
-- documents them; Lua never builds a key name.
--
-- Each path is a state machine where delete wins:
--   absent     + create -> live        (entry stored, folder +1, stats +)
--   absent     + delete -> tombstoned  (tombstone only)
--   live       + create -> live        (duplicate, no-op)
--   live       + delete -> tombstoned  (entry removed, folder -1, stats -)
--   tombstoned + any    -> tombstoned  (ignored / duplicate; tombstone touched)
--
-- The call runs in three phases so that a failing call writes nothing:
--   1. read: check every key's type, read the state of every path and the
--      counters that will change (failing here leaves Redis untouched);
--   2. decide, in memory, op by op, in order;
--   3. write the difference between the initial and final states, with
--      commands that cannot fail once phase 1 passed.
-- Ops come grouped by folder, each folder with the sum of its creates'
-- sizes and rows, so the common case (every create takes effect) does no
-- per-op number parsing; only a create without effect is read back.
-- Returns one outcome character per op, in the order received: a=applied,
-- t=tombstoned (delete of an unindexed path), d=duplicate, i=ignored
-- (create of a tombstoned path).

local now = ARGV[1]
local ntables, nfiles, ndirs = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local CHUNK = 4000 -- stays under Lua's unpack limit (LUAI_MAXCSTACK 8000)

local function fail(code, msg)
  error({err = code .. ' patch_index: ' .. msg .. '; nothing was written. Repair it (see indexer check).'}, 0)
end

-- call runs cmd key with list[1..n] as trailing arguments, in chunks.
local function call(cmd, key, list, n)
  if n <= CHUNK then return redis.call(cmd, key, unpack(list, 1, n)) end
  local out, o = {}, 0
  for first = 1, n, CHUNK do
    local r = redis.call(cmd, key, unpack(list, first, math.min(first + CHUNK - 1, n)))
    if type(r) == 'table' then
      for i = 1, #r do o = o + 1; out[o] = r[i] end
    end
  end
  return out
end

local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    fail('WRONGTYPE', 'key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want)
  end
end

-- size_rows reads size_bytes and row_count of an entry. Entries in GigAPI's
-- Go field order (indexer's) have them right after path, whose value holds
-- no quote; others (cjson-encoded by GigAPI's library) are decoded.
local function size_rows(v)
  if string.sub(v, 1, 10) == '{"layer":"' then
    local at = string.find(v, '","size_bytes":', 1, true)
    if at then
      local s, r = string.match(v, '^(%d+),"row_count":(%d+)', at + 15)
      if s then return tonumber(s), tonumber(r) end
    end
  end
  local ok, e = pcall(cjson.decode, v)
  if ok and type(e) == 'table' then
    return tonumber(e['size_bytes']) or 0, tonumber(e['row_count']) or 0
  end
  return 0, 0
end

-- Phase 1: keys, types, current state.
local registry = KEYS[1]
check_type(registry, 'set')

local tables, a = {}, 5
for t = 1, ntables do
  local k = 2 + 3 * (t - 1)
  local tb = {folders = KEYS[k], tomb = KEYS[k + 1], stats = KEYS[k + 2],
    member = ARGV[a], evtime = ARGV[a + 1], tombs = {'GT'}, ntombs = 1,
    files = 0, bytes = 0, rows = 0}
  check_type(tb.folders, 'hash')
  check_type(tb.tomb, 'zset')
  check_type(tb.stats, 'hash')
  tables[t] = tb
  a = a + 2
end

-- A files group is one files: hash (a table and a date). Its paths are
-- numbered; per-path state lives in arrays indexed by that number:
-- 0 absent, 1 live, 2 tombstoned.
local files = {}
for f = 1, nfiles do
  local fg = {key = KEYS[1 + 3 * ntables + f], tb = tables[tonumber(ARGV[a])], date = ARGV[a + 1],
    idx = {}, paths = {}, n = 0, st = {}, init = {}, entry = {}, new = {}, pdir = {},
    files = 0, bytes = 0, rows = 0}
  check_type(fg.key, 'hash')
  files[f] = fg
  a = a + 2
end

-- A dir is one folder: its files group, name, op kinds ('C'/'D' per op),
-- and the sums of its creates' sizes and rows.
local dirs = {}
for d = 1, ndirs do
  dirs[d] = {fg = files[tonumber(ARGV[a])], name = ARGV[a + 1], kinds = ARGV[a + 2],
    files = 0, bytes = tonumber(ARGV[a + 3]), rows = tonumber(ARGV[a + 4])}
  a = a + 5
end

-- Ops, as parallel arrays, folder by folder: a path, and for a create its
-- entry.
local ocreate, odir, opi, oarg, nops = {}, {}, {}, {}, 0
for d = 1, ndirs do
  local dir = dirs[d]
  local fg, kinds = dir.fg, dir.kinds
  local idx, paths, pdir = fg.idx, fg.paths, fg.pdir
  for j = 1, string.len(kinds) do
    local create = string.byte(kinds, j) == 67 -- 'C'
    local path = ARGV[a]
    local pi = idx[path]
    if not pi then
      pi = fg.n + 1
      fg.n = pi
      idx[path] = pi
      paths[pi] = path
      pdir[pi] = dir
    end
    nops = nops + 1
    ocreate[nops], odir[nops], opi[nops], oarg[nops] = create, dir, pi, a + 1
    if create then a = a + 2 else a = a + 1 end
  end
end
if nops == 0 then return '' end

-- A live path is live (its tombstone, if any, is not consulted: a later
-- delete removes it and touches the tombstone); only the others are
-- looked up in the tombstone set.
for f = 1, nfiles do
  local fg = files[f]
  local entries = call('HMGET', fg.key, fg.paths, fg.n)
  local st, init, entry, paths = fg.st, fg.init, fg.entry, fg.paths
  local rest, nrest, at = {}, 0, {}
  for i = 1, fg.n do
    if entries[i] then
      st[i], init[i] = 1, 1
      entry[i] = entries[i]
    else
      nrest = nrest + 1
      rest[nrest], at[nrest] = paths[i], i
    end
  end
  if nrest > 0 then
    local scores = call('ZMSCORE', fg.tb.tomb, rest, nrest)
    for j = 1, nrest do
      local s = 0
      if scores[j] then s = 2 end
      st[at[j]], init[at[j]] = s, s
    end
  end
end

-- uncount takes a create without effect out of its folder's sums.
local function uncount(dir, entry)
  local size, rows = size_rows(entry)
  dir.bytes, dir.rows = dir.bytes - size, dir.rows - rows
end

-- Phase 2: decide, op by op.
local out = {}
for i = 1, nops do
  local dir, pi = odir[i], opi[i]
  local fg = dir.fg
  local st = fg.st
  local s = st[pi]
  if ocreate[i] then
    if s == 0 then
      st[pi] = 1
      fg.new[pi] = oarg[i]
      out[i] = 'a'
    else
      uncount(dir, ARGV[oarg[i]])
      if s == 1 then out[i] = 'd' else out[i] = 'i' end
    end
  elseif s == 1 then
    st[pi] = 2
    out[i] = 'a'
  elseif s == 0 then
    st[pi] = 2
    out[i] = 't'
  else
    out[i] = 'd'
  end
end

-- The difference between initial and final states.
for f = 1, nfiles do
  local fg = files[f]
  local tb = fg.tb
  local hset, nhset, hdel, nhdel = {}, 0, {}, 0
  local tombs, ntombs = tb.tombs, tb.ntombs
  local st, init, paths, pdir, new = fg.st, fg.init, fg.paths, fg.pdir, fg.new
  for i = 1, fg.n do
    local from, to = init[i], st[i]
    if to == 2 then
      tombs[ntombs + 1], tombs[ntombs + 2] = now, paths[i]
      ntombs = ntombs + 2
      if from == 1 then
        nhdel = nhdel + 1
        hdel[nhdel] = paths[i]
        local d = pdir[i]
        local size, rows = size_rows(fg.entry[i])
        d.files, d.bytes, d.rows = d.files - 1, d.bytes - size, d.rows - rows
      elseif new[i] then
        uncount(pdir[i], ARGV[new[i]]) -- created and deleted in this call
      end
    elseif to == 1 and from == 0 then
      hset[nhset + 1], hset[nhset + 2] = paths[i], ARGV[new[i]]
      nhset = nhset + 2
      local d = pdir[i]
      d.files = d.files + 1
    end
  end
  tb.ntombs = ntombs
  fg.hset, fg.nhset, fg.hdel, fg.nhdel = hset, nhset, hdel, nhdel
end

-- Sum folder changes per date and per table; list the folders to update.
for t = 1, ntables do
  tables[t].dirs, tables[t].ndirs = {}, 0
end
for d = 1, ndirs do
  local dir = dirs[d]
  local fg = dir.fg
  local tb = fg.tb
  fg.files, fg.bytes, fg.rows = fg.files + dir.files, fg.bytes + dir.bytes, fg.rows + dir.rows
  tb.files, tb.bytes, tb.rows = tb.files + dir.files, tb.bytes + dir.bytes, tb.rows + dir.rows
  if dir.files ~= 0 then
    tb.ndirs = tb.ndirs + 1
    tb.dirs[tb.ndirs] = dir
  end
end

-- Counters must hold integers before anything is written, so that no write
-- below can fail halfway. Values stay far below 2^63 (HINCRBY's limit).
local function is_int(v)
  return v == false or (string.len(v) < 18 and string.match(v, '^%-?%d+$') ~= nil)
end

for t = 1, ntables do
  local tb = tables[t]
  if tb.ndirs > 0 then
    local names = {}
    for i = 1, tb.ndirs do names[i] = tb.dirs[i].name end
    local cur = call('HMGET', tb.folders, names, tb.ndirs)
    for i = 1, tb.ndirs do
      if not is_int(cur[i]) then
        fail('CORRUPT', 'field ' .. names[i] .. ' of ' .. tb.folders .. ' is not a file count')
      end
      tb.dirs[i].old = tonumber(cur[i] or 0)
    end
  end
  -- Totals, then files/bytes/rows per date of the table's groups.
  local fields, groups = {'last_event_ns', 'files', 'bytes', 'rows'}, {}
  for f = 1, nfiles do
    local fg = files[f]
    if fg.tb == tb and (fg.files ~= 0 or fg.bytes ~= 0 or fg.rows ~= 0) then
      local n = #fields
      fields[n + 1], fields[n + 2], fields[n + 3] = 'files:' .. fg.date, 'bytes:' .. fg.date, 'rows:' .. fg.date
      groups[#groups + 1] = fg
    end
  end
  local cur = call('HMGET', tb.stats, fields, #fields)
  for i = 2, #fields do
    if not is_int(cur[i]) then
      fail('CORRUPT', 'field ' .. fields[i] .. ' of ' .. tb.stats .. ' is not an integer')
    end
  end
  tb.last_event = cur[1]
  tb.totals_missing = not cur[2] or not cur[3] or not cur[4]
  tb.fields, tb.groups = fields, groups
  for g = 1, #groups do
    groups[g].old_files = tonumber(cur[2 + 3 * g] or 0)
  end
end

-- Phase 3: write.
local function newer(x, y) -- decimal strings without sign or leading zeros
  if not y then return true end
  if string.len(x) ~= string.len(y) then return string.len(x) > string.len(y) end
  return x > y
end

local function fmt(n) return string.format('%d', n) end

for f = 1, nfiles do
  local fg = files[f]
  if fg.nhset > 0 then call('HSET', fg.key, fg.hset, fg.nhset) end
  if fg.nhdel > 0 then call('HDEL', fg.key, fg.hdel, fg.nhdel) end
end

local members = {}
for t = 1, ntables do
  local tb = tables[t]
  members[t] = tb.member
  if tb.ntombs > 1 then call('ZADD', tb.tomb, tb.tombs, tb.ntombs) end

  local set, nset, del, ndel = {}, 0, {}, 0
  for i = 1, tb.ndirs do
    local dir = tb.dirs[i]
    local n = dir.old + dir.files
    if n == 0 then
      ndel = ndel + 1
      del[ndel] = dir.name
    else
      set[nset + 1], set[nset + 2] = dir.name, fmt(n)
      nset = nset + 2
    end
  end
  if nset > 0 then call('HSET', tb.folders, set, nset) end
  if ndel > 0 then call('HDEL', tb.folders, del, ndel) end

  -- The table's totals always exist once it was touched, so the index does
  -- not depend on how events were batched; a date's fields go when its
  -- last file does.
  for i, d in ipairs({tb.files, tb.bytes, tb.rows}) do
    if d ~= 0 or tb.totals_missing then redis.call('HINCRBY', tb.stats, tb.fields[i + 1], fmt(d)) end
  end
  local sdel, nsdel = {}, 0
  for g = 1, #tb.groups do
    local fg = tb.groups[g]
    local base = 2 + 3 * g
    if fg.old_files + fg.files == 0 then
      sdel[nsdel + 1], sdel[nsdel + 2], sdel[nsdel + 3] = tb.fields[base], tb.fields[base + 1], tb.fields[base + 2]
      nsdel = nsdel + 3
    else
      for i, d in ipairs({fg.files, fg.bytes, fg.rows}) do
        if d ~= 0 then redis.call('HINCRBY', tb.stats, tb.fields[base + i - 1], fmt(d)) end
      end
    end
  end
  if nsdel > 0 then call('HDEL', tb.stats, sdel, nsdel) end
  if newer(tb.evtime, tb.last_event) then
    redis.call('HSET', tb.stats, 'last_event_ns', tb.evtime)
  end
end
call('SADD', registry, members, ntables)

return table.concat(out)
