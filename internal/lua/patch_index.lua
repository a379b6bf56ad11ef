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
-- Go collapses a batch's ops per path into one kind: C (created), D
-- (deleted) or B (both; delete wins whatever the order), so the final state
-- depends only on the kind and the initial state, which the script returns
-- for Go to label each op.
--
-- The call runs in three phases so that a failing call writes nothing:
--   1. read: check every key's type, read every path's state and the
--      counters that will change (failing here leaves Redis untouched);
--   2. decide, path by path, and sum counter changes per folder;
--   3. write the difference, with commands that cannot fail once phase 1
--      passed.
-- Paths come folder by folder and folders files-hash by files-hash, each
-- folder with the sums of its created paths' sizes and rows, so the common
-- case (every create takes effect) parses no number per path.
-- Returns one digit per path, in the order received: its initial state,
-- 0 absent, 1 live, 2 tombstoned.

local now = ARGV[1]
local ntables, nfiles, ndirs = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local CHUNK = 4000 -- stays under Lua's unpack limit (LUAI_MAXCSTACK 8000)

local function fail(code, msg)
  error({err = code .. ' patch_index: ' .. msg .. '; nothing was written. Repair it (see indexer check).'}, 0)
end

-- call runs cmd key with list[first..last] as trailing arguments, in
-- chunks, and returns the concatenated array replies.
local function call(cmd, key, list, first, last)
  if last - first < CHUNK then return redis.call(cmd, key, unpack(list, first, last)) end
  local out, o = {}, 0
  for i = first, last, CHUNK do
    local r = redis.call(cmd, key, unpack(list, i, math.min(i + CHUNK - 1, last)))
    if type(r) == 'table' then
      for j = 1, #r do o = o + 1; out[o] = r[j] end
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
      -- Arithmetic coerces a numeric string once; tonumber would twice.
      if s then return s + 0, r + 0 end
    end
  end
  local ok, e = pcall(cjson.decode, v)
  if ok and type(e) == 'table' then
    return tonumber(e['size_bytes']) or 0, tonumber(e['row_count']) or 0
  end
  return 0, 0
end

-- Phase 1: keys, types, current state.
check_type(KEYS[1], 'set')

local tables, a = {}, 5
for t = 1, ntables do
  local k = 2 + 3 * (t - 1)
  local tb = {folders = KEYS[k], tomb = KEYS[k + 1], stats = KEYS[k + 2],
    member = ARGV[a], evtime = ARGV[a + 1], tombs = {'GT'}, ntombs = 1,
    files = 0, bytes = 0, rows = 0, dirs = {}, ndirs = 0}
  check_type(tb.folders, 'hash')
  check_type(tb.tomb, 'zset')
  check_type(tb.stats, 'hash')
  tables[t] = tb
  a = a + 2
end

-- A files group is one files: hash (a table and a date); its paths are
-- paths[first..last]. States are the strings '0' absent, '1' live, '2'
-- tombstoned (strings, so the reply needs no number formatting).
local files = {}
for f = 1, nfiles do
  local fg = {key = KEYS[1 + 3 * ntables + f], tb = tables[tonumber(ARGV[a])], date = ARGV[a + 1],
    files = 0, bytes = 0, rows = 0}
  check_type(fg.key, 'hash')
  files[f] = fg
  a = a + 2
end

-- A dir is one folder of a files group: its name, its paths' kinds (one
-- letter each), and the sums of its created paths' sizes and rows.
local dirs = {}
for d = 1, ndirs do
  dirs[d] = {fg = files[tonumber(ARGV[a])], name = ARGV[a + 1], kinds = ARGV[a + 2],
    files = 0, bytes = tonumber(ARGV[a + 3]), rows = tonumber(ARGV[a + 4])}
  a = a + 5
end
local first_path = a

-- Pass 1: the paths, each followed in ARGV by its entry when created.
local paths, n = {}, 0
for d = 1, ndirs do
  local dir = dirs[d]
  local kinds, fg = dir.kinds, dir.fg
  if not fg.first then fg.first = n + 1 end
  for j = 1, string.len(kinds) do
    n = n + 1
    paths[n] = ARGV[a]
    if string.byte(kinds, j) == 68 then a = a + 1 else a = a + 2 end -- 68 = 'D'
  end
  fg.last = n
end
if n == 0 then return '' end

-- Initial states. A live path is live (a tombstone it may also have is not
-- consulted: a delete removes the entry and touches the tombstone); only
-- the others are looked up in the tombstone set.
local st, entry = {}, {}
for f = 1, nfiles do
  local fg = files[f]
  local entries = call('HMGET', fg.key, paths, fg.first, fg.last)
  local rest, nrest, at = {}, 0, {}
  for i = fg.first, fg.last do
    local v = entries[i - fg.first + 1]
    if v then
      st[i] = '1'
      entry[i] = v
    else
      nrest = nrest + 1
      rest[nrest], at[nrest] = paths[i], i
    end
  end
  if nrest > 0 then
    local scores = call('ZMSCORE', fg.tb.tomb, rest, 1, nrest)
    for j = 1, nrest do
      if scores[j] then st[at[j]] = '2' else st[at[j]] = '0' end
    end
  end
end

-- Phase 2: decide, path by path (walking ARGV again, folder by folder).
-- uncount takes a create without effect out of its folder's sums.
local function uncount(dir, e)
  local size, rows = size_rows(e)
  dir.bytes, dir.rows = dir.bytes - size, dir.rows - rows
end

a, n = first_path, 0
for d = 1, ndirs do
  local dir = dirs[d]
  local kinds, fg = dir.kinds, dir.fg
  local tb = fg.tb
  local hset, hdel, tombs = fg.hset, fg.hdel, tb.tombs
  if not hset then
    hset, hdel = {}, {}
    fg.hset, fg.hdel, fg.nhset, fg.nhdel = hset, hdel, 0, 0
  end
  local nhset, nhdel, ntombs = fg.nhset, fg.nhdel, tb.ntombs
  for j = 1, string.len(kinds) do
    n = n + 1
    local k, s, p = string.byte(kinds, j), st[n], paths[n]
    if k == 67 then -- 'C': created
      if s == '0' then
        hset[nhset + 1], hset[nhset + 2] = p, ARGV[a + 1]
        nhset = nhset + 2
        dir.files = dir.files + 1
      else
        uncount(dir, ARGV[a + 1]) -- duplicate, or tombstoned
        if s == '2' then -- a late create touches its tombstone (see gc_tombstones)
          tombs[ntombs + 1], tombs[ntombs + 2] = now, p
          ntombs = ntombs + 2
        end
      end
      a = a + 2
    else -- 'D' deleted, or 'B' created and deleted: the path ends tombstoned
      if k == 66 then -- 'B'
        uncount(dir, ARGV[a + 1])
        a = a + 2
      else
        a = a + 1
      end
      if s == '1' then
        nhdel = nhdel + 1
        hdel[nhdel] = p
        local size, rows = size_rows(entry[n])
        dir.files, dir.bytes, dir.rows = dir.files - 1, dir.bytes - size, dir.rows - rows
      end
      tombs[ntombs + 1], tombs[ntombs + 2] = now, p
      ntombs = ntombs + 2
    end
  end
  fg.nhset, fg.nhdel, tb.ntombs = nhset, nhdel, ntombs
  -- Sum the folder into its date and table.
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
    local cur = call('HMGET', tb.folders, names, 1, tb.ndirs)
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
      local m = #fields
      fields[m + 1], fields[m + 2], fields[m + 3] = 'files:' .. fg.date, 'bytes:' .. fg.date, 'rows:' .. fg.date
      groups[#groups + 1] = fg
    end
  end
  local cur = call('HMGET', tb.stats, fields, 1, #fields)
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

local function fmt(v) return string.format('%d', v) end

for f = 1, nfiles do
  local fg = files[f]
  if fg.nhset > 0 then call('HSET', fg.key, fg.hset, 1, fg.nhset) end
  if fg.nhdel > 0 then call('HDEL', fg.key, fg.hdel, 1, fg.nhdel) end
end

local members = {}
for t = 1, ntables do
  local tb = tables[t]
  members[t] = tb.member
  if tb.ntombs > 1 then call('ZADD', tb.tomb, tb.tombs, 1, tb.ntombs) end

  local set, nset, del, ndel = {}, 0, {}, 0
  for i = 1, tb.ndirs do
    local dir = tb.dirs[i]
    local c = dir.old + dir.files
    if c == 0 then
      ndel = ndel + 1
      del[ndel] = dir.name
    else
      set[nset + 1], set[nset + 2] = dir.name, fmt(c)
      nset = nset + 2
    end
  end
  if nset > 0 then call('HSET', tb.folders, set, 1, nset) end
  if ndel > 0 then call('HDEL', tb.folders, del, 1, ndel) end

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
  if nsdel > 0 then call('HDEL', tb.stats, sdel, 1, nsdel) end
  if newer(tb.evtime, tb.last_event) then
    redis.call('HSET', tb.stats, 'last_event_ns', tb.evtime)
  end
end
call('SADD', KEYS[1], members, 1, ntables)

return table.concat(st, '', 1, n)
