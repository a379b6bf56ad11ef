#!lua
-- (shared.lua's size_rows and idname come before this line.)
-- patch_index: apply a batch of file operations to the GigAPI index in one
-- atomic call. PatchIndex in patch_index.go builds KEYS and ARGV and
-- documents them; Lua never builds a key name.
--
-- Each path is a state machine where delete wins:
--   absent     + create -> live        (entry stored, folder +1, stats +,
--                                       enrolled in its merge or move item)
--   absent     + delete -> tombstoned  (tombstone, drop item)
--   live       + create -> live        (duplicate, no-op)
--   live       + delete -> tombstoned  (entry removed, folder -1, stats -,
--                                       drop item, out of its published item)
--   tombstoned + any    -> tombstoned  (ignored / duplicate; tombstone touched)
-- Go collapses a batch's ops per path into one kind: C (created), D
-- (deleted) or B (both; delete wins whatever the order), so the final state
-- depends only on the kind and the initial state, which the script returns
-- for Go to label each op.
--
-- Queues (queue.go documents the records): the paths that become live in
-- a queue group join the group's last item while it is not due and the
-- size fits, as one list element per group (a chunk Go joined); an item is
-- published into GigAPI's :idle list when due, from its live paths. So no
-- item is read or rewritten here, whatever its length: an append costs
-- nothing per path, and a delete only looks the path up among published
-- items (an item withdrawn from its :idle list goes back to pending).
--
-- The call runs in three phases so that a failing call writes nothing:
--   1. read: check every key's type, read every path's state and the
--      counters and records that will change (failing here leaves Redis
--      untouched);
--   2. decide, path by path, and sum counter changes per folder;
--   3. write the difference, with commands that cannot fail once phase 1
--      passed.
-- Paths come folder by folder and folders files-hash by files-hash, each
-- folder with the sums of its created paths' sizes and rows, so the common
-- case (every create takes effect) parses no number per path.
-- Returns one digit per path, in the order received: its initial state,
-- 0 absent, 1 live, 2 tombstoned; then, for a call with a plan, 'r' when
-- the plan's lease was released, 's' when the plan was superseded, or 'd'
-- when the call replays a commit already applied (nothing changes).

-- Locals: a global is a table lookup at every use, a local a register.
local ARGV, KEYS, redis, tonumber = ARGV, KEYS, redis, tonumber
local now = ARGV[1]
local ntables, nfiles, ndirs = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local queues, ndrops, nextra = ARGV[5] == '1', tonumber(ARGV[6]), tonumber(ARGV[7])
local planmode, now_s = ARGV[8], tonumber(ARGV[9])
-- With the registry flag, KEYS[1] is the set of tables and the other keys
-- follow it; without (the cluster layout) they start at KEYS[1].
local registry = ARGV[10] == '1'
local k0 = registry and 1 or 0
local CHUNK = 4000 -- stays under Lua's unpack limit (LUAI_MAXCSTACK 8000)
local dbyte = string.byte

-- byte_table returns the bytes of s as a table, so that a loop over them
-- indexes a table instead of calling string.byte once per byte (string.byte
-- returns at most CHUNK values at a time).
local function byte_table(s)
  local len = string.len(s)
  if len <= CHUNK then return {dbyte(s, 1, len)} end
  local t = {}
  for i = 1, len, CHUNK do
    local b = {dbyte(s, i, math.min(i + CHUNK - 1, len))}
    for j = 1, #b do t[i - 1 + j] = b[j] end
  end
  return t
end

local function fail(code, msg)
  error({err = code .. ' patch_index: ' .. msg .. '; nothing was written. Repair it (see indexer check).'}, 0)
end

-- call runs cmd key [flag] with list[first..last] as trailing arguments,
-- in chunks (of an even length, so field-value and score-member pairs
-- starting at first stay whole; each chunk gets the flag), and returns
-- the concatenated array replies.
local function call(cmd, key, list, first, last, flag)
  if last - first < CHUNK then
    if flag then return redis.call(cmd, key, flag, unpack(list, first, last)) end
    return redis.call(cmd, key, unpack(list, first, last))
  end
  local out, o = {}, 0
  for i = first, last, CHUNK do
    local r
    if flag then
      r = redis.call(cmd, key, flag, unpack(list, i, math.min(i + CHUNK - 1, last)))
    else
      r = redis.call(cmd, key, unpack(list, i, math.min(i + CHUNK - 1, last)))
    end
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

-- Counters must hold integers before anything is written, so that no write
-- below can fail halfway. Values stay far below 2^63 (HINCRBY's limit).
local function is_int(v)
  return v == false or (string.len(v) < 18 and string.match(v, '^%-?%d+$') ~= nil)
end

local function fmt(v) return string.format('%d', v) end

-- Phase 1: keys, types, current state.
if registry then check_type(KEYS[1], 'set') end

local nk, nf = 3, 1 -- keys per table, per files group
if queues then nk, nf = 6, 3 end
-- The :idle lists of published items whose files the call deletes under
-- another layer or writer than the item's (see the withdrawals below):
-- "<table> <group>" -> index in the extra keys.
local alt, a = {}, 12
for _ = 1, tonumber(ARGV[11]) do
  alt[ARGV[a] .. ' ' .. ARGV[a + 1]] = tonumber(ARGV[a + 2])
  a = a + 3
end
local tables = {}
for t = 1, ntables do
  local k = k0 + 1 + nk * (t - 1)
  local tb = {folders = KEYS[k], tomb = KEYS[k + 1], stats = KEYS[k + 2],
    member = ARGV[a], evtime = ARGV[a + 1], tombs = {}, ntombs = 0,
    files = 0, bytes = 0, rows = 0, dirs = {}, ndirs = 0}
  check_type(tb.folders, 'hash')
  check_type(tb.tomb, 'zset')
  check_type(tb.stats, 'hash')
  if queues then
    -- The table's queue records: state hash, items pending publication
    -- (member seq) and published items (member id), scored by time_s.
    tb.q = {state = KEYS[k + 3], pending = KEYS[k + 4], ready = KEYS[k + 5],
      groups = {}, ngroups = 0, hset = {}, nhset = 0, hdel = {}, nhdel = 0, padd = {}, npadd = 0}
    check_type(tb.q.state, 'hash')
    check_type(tb.q.pending, 'zset')
    check_type(tb.q.ready, 'zset')
  end
  tb.i = t
  tables[t] = tb
  a = a + 2
end

-- A files group is one files: hash (a table and a date); its paths are
-- paths[first..last]. With queues, also the date's chunk list (pairs of
-- item seq and '\n'-joined paths) and its published-path hash (path -> id
-- of the published item listing it). States are the strings '0' absent,
-- '1' live, '2' tombstoned (strings, so the reply needs no number
-- formatting).
local files = {}
local kf = k0 + nk * ntables
for f = 1, nfiles do
  local k = kf + nf * (f - 1) + 1
  local fg = {key = KEYS[k], tb = tables[tonumber(ARGV[a])], date = ARGV[a + 1],
    files = 0, bytes = 0, rows = 0}
  check_type(fg.key, 'hash')
  if queues then
    fg.chunks, fg.pub, fg.cl, fg.ncl, fg.dp, fg.dd, fg.dg, fg.ndp = KEYS[k + 1], KEYS[k + 2], {}, 0, {}, {}, {}, 0
    check_type(fg.chunks, 'list')
    -- Without published items on this date, deletes need no lookup.
    local t = redis.call('TYPE', fg.pub)['ok']
    if t ~= 'none' and t ~= 'hash' then
      fail('WRONGTYPE', 'key ' .. fg.pub .. ' holds a ' .. t .. ', expected a hash')
    end
    fg.haspub = t == 'hash'
  end
  files[f] = fg
  a = a + 2
end

-- The drop lists, and the extra keys: the :idle lists withdrawals may
-- touch, type-checked when first used (still before the first write).
local kd = kf + nf * nfiles
local drops = {}
for i = 1, ndrops do
  drops[i] = {key = KEYS[kd + i], items = {}, n = 0}
  check_type(drops[i].key, 'list')
end
drops[0] = false
local ke = kd + ndrops
local checked = {}
local function extra(i, want)
  local key = KEYS[ke + i]
  if not checked[i] then
    check_type(key, want)
    checked[i] = true
  end
  return key
end

-- The plan a files.replaced completes: 'P' to check (its id and token, the
-- :processing list and the lease set follow), 'S' already known stale.
local plan
if planmode == 'P' then
  plan = {id = ARGV[a], token = ARGV[a + 1], processing = KEYS[ke + nextra + 1], leases = KEYS[ke + nextra + 2]}
  a = a + 2
  check_type(plan.processing, 'list')
  check_type(plan.leases, 'zset')
  local st = tables[1].q.state
  local rec = redis.call('HGET', st, 'l' .. plan.id)
  local tok = rec and string.match(rec, '^(%d+) ')
  if tok == plan.token then
    plan.json = redis.call('HGET', st, 'j' .. plan.id)
    if plan.json and redis.call('LPOS', plan.processing, plan.json) then plan.valid = true end
  end
end
local superseded = planmode == 'S' or (plan ~= nil and not plan.valid)

-- A dir is one folder of a files group: its name, its paths' kinds (one
-- letter each: C created, E created into a merge or move item, D deleted,
-- B both), and the sums of its created paths' sizes and rows. With
-- queues, also one byte per path (its queue group in the dir, 0 for
-- none), one byte per group (its drop list, 0 for none), one double per
-- path (its size), and its groups, five ARGV each: the field of its last
-- item ("L" and the group), the hash its item ids carry, its chunk (its
-- created paths, '\n'-joined), its numbers, and its cuts (see below); ''
-- for a group with no item.
local dirs = {}
-- mag sums the magnitudes of every size (and row count) the call adds or
-- subtracts: the created paths' here, the deleted live entries' below.
-- While it stays below 2^53 every partial sum is an exact integer in
-- Lua's doubles; past it the call is refused before its first write
-- (RANGE) and Go splits it (Go's own guard only sees the sizes events
-- carry, and a delete need not carry one).
local mag_b, mag_r = 0, 0
for d = 1, ndirs do
  local dir = {fg = files[tonumber(ARGV[a])], name = ARGV[a + 1], kinds = ARGV[a + 2],
    files = 0, bytes = tonumber(ARGV[a + 3]), rows = tonumber(ARGV[a + 4])}
  mag_b, mag_r = mag_b + dir.bytes, mag_r + dir.rows
  a = a + 5
  if queues then
    dir.q, dir.nums, dir.g0 = ARGV[a], ARGV[a + 2], a + 4
    dir.gd = {dbyte(ARGV[a + 1], 1, -1)}
    dir.qbb = byte_table(dir.q)
    a = a + 4 + 5 * tonumber(ARGV[a + 3])
  end
  dirs[d] = dir
end
local first_path = a
-- Drop items come after the path (and entry) of each delete, and of each
-- create in a call with a plan.
local dropargs = queues and ndrops > 0
local cdrop = dropargs and planmode ~= '' and 1 or 0
local ddrop = dropargs and 1 or 0
-- adv[k] is how many ARGV a path of kind k takes: C and E a path, an
-- entry (and a drop item in a call with a plan), D a path (and a drop
-- item), B a path and an entry (and a drop item).
local adv = {[67] = 2 + cdrop, [69] = 2 + cdrop, [68] = 1 + ddrop, [66] = 2 + ddrop}

-- Pass 1: the paths, each followed in ARGV by its entry when created.
local paths, n = {}, 0
for d = 1, ndirs do
  local dir = dirs[d]
  local kb, fg = byte_table(dir.kinds), dir.fg
  dir.kb = kb
  if not fg.first then fg.first = n + 1 end
  dir.n0 = n
  for j = 1, #kb do
    n = n + 1
    paths[n] = ARGV[a]
    a = a + adv[kb[j]]
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

local unpack_struct = struct.unpack

local replay = true

a, n = first_path, 0
for d = 1, ndirs do
  local dir = dirs[d]
  local kb, fg = dir.kb, dir.fg
  local tb = fg.tb
  local qb, gd = dir.qbb, dir.gd
  local hset, hdel, tombs = fg.hset, fg.hdel, tb.tombs
  if not hset then
    hset, hdel = {}, {}
    fg.hset, fg.hdel, fg.nhset, fg.nhdel = hset, hdel, 0, 0
  end
  local nhset, nhdel, ntombs = fg.nhset, fg.nhdel, tb.ntombs
  for j = 1, #kb do
    n = n + 1
    local k, s, p = kb[j], st[n], paths[n]
    if superseded then
      -- A stale worker's commit: its removals are not applied, and its
      -- outputs that are not live are garbage to drop. (A replay of a
      -- committed event finds its outputs live and its inputs gone.)
      if (k == 68 and s ~= '2') or (k ~= 68 and s ~= '1') then replay = false end
      if k ~= 68 then
        uncount(dir, ARGV[a + 1])
        if s == '0' then
          tombs[ntombs + 1], tombs[ntombs + 2] = now, p
          ntombs = ntombs + 2
          local tg = qb and drops[gd[qb[j]] or 0]
          if tg then
            tg.n = tg.n + 1
            tg.items[tg.n] = ARGV[a + 2]
          end
        end
      end
      a = a + adv[k]
    elseif k == 67 or k == 69 then -- 'C', 'E': created
      if s == '0' then
        hset[nhset + 1], hset[nhset + 2] = p, ARGV[a + 1]
        nhset = nhset + 2
        dir.files = dir.files + 1
      else
        -- An 'E' without effect: its group's chunk must leave it out.
        if k == 69 then dir.ex = true end
        uncount(dir, ARGV[a + 1]) -- duplicate, or tombstoned
        if s == '2' then -- a late create touches its tombstone (see gc_tombstones)
          tombs[ntombs + 1], tombs[ntombs + 2] = now, p
          ntombs = ntombs + 2
        end
      end
      a = a + 2 + cdrop
    else -- 'D' deleted, or 'B' created and deleted: the path ends tombstoned
      if k == 66 then -- 'B'
        uncount(dir, ARGV[a + 1])
        a = a + 2
      else
        a = a + 1
      end
      local gi = qb and s ~= '2' and qb[j]
      if s == '1' then
        nhdel = nhdel + 1
        hdel[nhdel] = p
        local size, rows = size_rows(entry[n])
        dir.files, dir.bytes, dir.rows = dir.files - 1, dir.bytes - size, dir.rows - rows
        mag_b, mag_r = mag_b + size, mag_r + rows
        if fg.haspub then
          -- Look it up among published items, to withdraw its item.
          local e = fg.ndp + 1
          fg.dp[e], fg.dd[e], fg.dg[e], fg.ndp = p, dir, gi, e
        end
      end
      local tg = gi and drops[gd[gi] or 0]
      if tg then
        tg.n = tg.n + 1
        tg.items[tg.n] = ARGV[a]
      end
      if dropargs then a = a + 1 end
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

if mag_b >= 9007199254740992 or mag_r >= 9007199254740992 then
  error({err = 'RANGE patch_index: the sizes or row counts this call adds and removes sum to 2^53 or more, ' ..
    'beyond exact arithmetic; nothing was written. Apply its events in smaller calls.'}, 0)
end

-- Queue records (queue.go): the state hash holds "seq" (the last item
-- seq), "i<seq>" per pending item ("<kind> <time_s> <id-or-hash> <group>"),
-- "L<group>" per merge key (seq, size and time_s of its last item, packed
-- as three doubles; new files join it while it is not due and size +
-- size_bytes <= max; the size counts files deleted since, so it only errs
-- towards starting a new item), and "J<id>"/"G<id>" per published item
-- (its JSON, its group).
local pack_struct = struct.pack
for t = 1, ntables do
  local tb = tables[t]
  local q = tb.q
  if q then
    local cur = redis.call('HGET', q.state, 'seq')
    if not is_int(cur) then fail('CORRUPT', 'field seq of ' .. q.state .. ' is not an integer') end
    q.seq = tonumber(cur or 0)
    q.seq0 = q.seq
    -- The table's groups with created paths (their chunk is not empty),
    -- and the last items of the merge keys among them. A superseded
    -- commit makes nothing live.
    local gs, ngs, lf, nlf = {}, 0, {}, 0
    for d = 1, superseded and 0 or ndirs do
      local dir = dirs[d]
      if dir.fg.tb == tb then
        for gi = 1, #dir.gd do
          local b = dir.g0 + 5 * (gi - 1)
          if ARGV[b + 2] ~= '' then
            ngs = ngs + 1
            gs[ngs] = {b, dir, gi}
            if dbyte(ARGV[b + 3], 1) == 109 then -- 'm'
              nlf = nlf + 1
              lf[nlf] = ARGV[b]
            end
          end
        end
      end
    end
    local lv = nlf > 0 and call('HMGET', q.state, lf, 1, nlf) or {}
    local function newitem(kind, b, tm, id)
      q.seq = q.seq + 1
      local seq = fmt(q.seq)
      q.hset[q.nhset + 1], q.hset[q.nhset + 2] = 'i' .. seq, kind .. fmt(tm) .. ' ' .. id .. ' ' .. string.sub(ARGV[b], 2)
      q.padd[q.npadd + 1], q.padd[q.npadd + 2] = tm, seq
      q.nhset, q.npadd = q.nhset + 2, q.npadd + 2
      return seq
    end
    local function push(fg, seq, chunk)
      fg.cl[fg.ncl + 1], fg.cl[fg.ncl + 2] = seq, chunk
      fg.ncl = fg.ncl + 2
    end
    -- live returns the group's created paths that became live, with their
    -- sizes (walking its dir again: only for the rare groups that need it).
    local function live(dir, gi)
      local ps, zs, n0 = {}, {}, dir.n0
      local kb, qb = dir.kb, dir.qbb
      for j = 1, #kb do
        if kb[j] == 69 and qb[j] == gi and st[n0 + j] == '0' then
          ps[#ps + 1] = paths[n0 + j]
          zs[#zs + 1] = unpack_struct('<d', dir.nums, 8 * j - 7)
        end
      end
      return ps, zs
    end
    nlf = 0
    for i = 1, ngs do
      local b, dir, gi = gs[i][1], gs[i][2], gs[i][3]
      local fg = dir.fg
      local chunk = ARGV[b + 2]
      local kind, timeout, max, total, count, vtime = unpack_struct('<Bddddd', ARGV[b + 3])
      if kind == 118 then -- 'v': moves, one batch per group, due at chunk time + TTL
        if dir.ex then chunk = table.concat((live(dir, gi)), '\n') end
        if chunk ~= '' then push(fg, newitem('v ', b, vtime, ARGV[b + 1]), chunk) end
      else
        nlf = nlf + 1
        local seq, size, tm
        if lv[nlf] then
          if string.len(lv[nlf]) ~= 24 then
            fail('CORRUPT', 'field ' .. ARGV[b] .. ' of ' .. q.state .. ' is not a last-item pointer')
          end
          seq, size, tm = unpack_struct('<ddd', lv[nlf])
          if tm <= now_s then seq = nil end -- due: it may be published any moment
        end
        if not dir.ex and seq and size + total <= max then
          -- The common case: the whole chunk joins the last item.
          push(fg, fmt(seq), chunk)
          size = size + total
        elseif not dir.ex then
          -- Item by item, with the cuts Go computed for the group's paths:
          -- per path j, P the size of paths 1..j, E where path j ends in
          -- the chunk, N the first path an item starting at j cannot take.
          local cuts, nc = ARGV[b + 4], count
          local function cut(j)
            if j == 0 then return 0, -1, 1 end
            return unpack_struct('<dII', cuts, 16 * j - 15)
          end
          local i = 1
          if seq then
            -- The last item takes paths 1..i-1: i is the first path it
            -- cannot take.
            local lo, hi = 1, nc
            while lo < hi do
              local mid = math.floor((lo + hi) / 2)
              if size + cut(mid) > max then hi = mid else lo = mid + 1 end
            end
            i = lo
            if i > 1 then
              local pz, e = cut(i - 1)
              push(fg, fmt(seq), string.sub(chunk, 1, e))
              size = size + pz
            end
          end
          while i <= nc do
            local p0, e0 = cut(i - 1)
            local _, ei, ni = cut(i)
            local pz, ez = cut(ni - 1)
            tm = now_s + timeout
            seq = newitem('m ', b, tm, 'm' .. ARGV[b + 1] .. '-' .. idname(string.sub(chunk, e0 + 26, ei - 8)))
            push(fg, seq, string.sub(chunk, e0 + 2, ez))
            size, i = pz - p0, ni
          end
        else
          -- Path by path: the item takes paths while the size fits.
          local ps, zs = live(dir, gi)
          local cs, nc = {}, 0
          if seq then seq = fmt(seq) end
          for e = 1, #ps do
            local p, sz = ps[e], zs[e]
            if not seq or size + sz > max then
              if nc > 0 then push(fg, seq, table.concat(cs, '\n')) end
              tm = now_s + timeout
              seq, size, cs, nc = newitem('m ', b, tm, 'm' .. ARGV[b + 1] .. '-' .. idname(string.sub(p, 25, -9))), 0, {}, 0
            end
            nc = nc + 1
            cs[nc] = p
            size = size + sz
          end
          if nc > 0 then push(fg, seq, table.concat(cs, '\n')) end
        end
        if type(seq) == 'number' then seq = fmt(seq) end
        if seq then
          q.hset[q.nhset + 1], q.hset[q.nhset + 2] = ARGV[b], pack_struct('<ddd', seq, size, tm)
          q.nhset = q.nhset + 2
        end
      end
    end
  end
end

-- Deletes of live paths: a path listed by a published item (still in its
-- :idle list, waiting for a worker) withdraws that item; its other live
-- paths go back to pending, as a new item with the same id and time_s,
-- due so that it is published again at once.
local withdrawn = {}
for f = 1, nfiles do
  local fg = files[f]
  if fg.ndp and fg.ndp > 0 then
    local ids = call('HMGET', fg.pub, fg.dp, 1, fg.ndp)
    for e = 1, fg.ndp do
      local id = ids[e]
      if id then
        local q = fg.tb.q
        local w = withdrawn[id]
        if not w then
          local json = redis.call('HGET', q.state, 'J' .. id)
          local gid = redis.call('HGET', q.state, 'G' .. id)
          if not json or not gid then
            fail('CORRUPT', 'published item ' .. id .. ' of ' .. fg.pub .. ' has no record in ' .. q.state)
          end
          local gi, idle, lfield = fg.dg[e], 0, ''
          if gi > 0 then
            local b = fg.dd[e].g0 + 5 * (gi - 1)
            lfield = ARGV[b]
            idle = select(7, unpack_struct('<BdddddH', ARGV[b + 3]))
          end
          if string.sub(lfield, 2) ~= gid or idle == 0 then
            -- The delete names another layer or writer than the item's
            -- group: the path alone names the file, so the item is
            -- withdrawn all the same, from its own :idle list, which Go
            -- passes once it knows the group (before any write).
            idle = alt[fg.tb.i .. ' ' .. gid]
            if not idle then
              error({err = 'ITEMGROUP ' .. fg.tb.i .. ' ' .. gid .. ' patch_index: the delete of ' .. fg.dp[e] ..
                ' needs the :idle list of its item ' .. id .. '; nothing was written'}, 0)
            end
          end
          local ok, item = pcall(cjson.decode, json)
          if not ok or type(item) ~= 'table' then
            fail('CORRUPT', 'published item ' .. id .. ' in ' .. q.state .. ' is not JSON')
          end
          w = {id = id, json = json, item = item, gid = gid, q = q, fg = fg, idle = extra(idle, 'list'), gone = {}}
          withdrawn[id] = w
          withdrawn[#withdrawn + 1] = w
        end
        w.gone[fg.dp[e]] = true
      end
    end
  end
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

for f = 1, nfiles do
  local fg = files[f]
  if fg.nhset > 0 then call('HSET', fg.key, fg.hset, 1, fg.nhset) end
  if fg.nhdel > 0 then call('HDEL', fg.key, fg.hdel, 1, fg.nhdel) end
end

-- Withdrawals: out of the :idle list and the published-path hash; the
-- paths still live go back to pending (merge), a move item just goes.
for _, w in ipairs(withdrawn) do
  local q, fg = w.q, w.fg
  local removed = redis.call('LREM', w.idle, 1, w.json)
  local item = w.item
  local ps = item.paths or {item.path_from}
  if #ps > 0 then call('HDEL', fg.pub, ps, 1, #ps) end
  q.hdel[q.nhdel + 1], q.hdel[q.nhdel + 2] = 'J' .. w.id, 'G' .. w.id
  q.nhdel = q.nhdel + 2
  redis.call('ZREM', q.ready, w.id)
  if removed > 0 and item.paths then
    local keep, nk2 = {}, 0
    for _, p in ipairs(ps) do
      if not w.gone[p] then
        nk2 = nk2 + 1
        keep[nk2] = p
      end
    end
    if nk2 > 0 then
      -- item.time_s is an integer below 2^53, exact in a double.
      local tm = string.match(w.json, '"time_s":(%d+)')
      q.seq = q.seq + 1
      local seq = fmt(q.seq)
      q.hset[q.nhset + 1], q.hset[q.nhset + 2] = 'i' .. seq, 'm ' .. tm .. ' ' .. w.id .. ' ' .. w.gid
      q.nhset = q.nhset + 2
      q.padd[q.npadd + 1], q.padd[q.npadd + 2] = tm, seq
      q.npadd = q.npadd + 2
      fg.cl[fg.ncl + 1], fg.cl[fg.ncl + 2] = seq, table.concat(keep, '\n')
      fg.ncl = fg.ncl + 2
    end
  end
end

local members = {}
for t = 1, ntables do
  local tb = tables[t]
  members[t] = tb.member
  if tb.ntombs > 0 then call('ZADD', tb.tomb, tb.tombs, 1, tb.ntombs, 'GT') end

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
  local q = tb.q
  if q then
    if q.seq ~= q.seq0 then
      q.hset[q.nhset + 1], q.hset[q.nhset + 2] = 'seq', fmt(q.seq)
      q.nhset = q.nhset + 2
    end
    if q.nhdel > 0 then call('HDEL', q.state, q.hdel, 1, q.nhdel) end
    if q.nhset > 0 then call('HSET', q.state, q.hset, 1, q.nhset) end
    if q.npadd > 0 then call('ZADD', q.pending, q.padd, 1, q.npadd) end
  end
end
if registry then call('SADD', KEYS[1], members, 1, ntables) end

for f = 1, nfiles do
  local fg = files[f]
  if fg.ncl and fg.ncl > 0 then call('RPUSH', fg.chunks, fg.cl, 1, fg.ncl) end
end
for i = 1, ndrops do
  local tg = drops[i]
  if tg.n > 0 then call('RPUSH', tg.key, tg.items, 1, tg.n) end
end

local res = table.concat(st, '', 1, n)
if plan then
  if plan.valid then
    -- The commit completes the plan: release its lease.
    redis.call('LREM', plan.processing, 1, plan.json)
    redis.call('HDEL', tables[1].q.state, 'l' .. plan.id, 'j' .. plan.id)
    redis.call('ZREM', plan.leases, plan.id)
    return res .. 'r'
  end
end
if superseded then
  if replay then return res .. 'd' end
  return res .. 's'
end
return res
