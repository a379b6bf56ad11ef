#!lua
-- (shared.lua's size_rows and idname come before this line.)
-- recount_date: recount one date of a table from its entries, atomically,
-- and (when ARGV[3] is '1') set its counters to the recount. RecountDate
-- in recount.go lays out KEYS and ARGV:
--   KEYS[1] the files: hash of the date, KEYS[2] the table's folders: hash,
--   KEYS[3] its statistics hash, KEYS[4] the table registry (set; absent
--   in the cluster layout, whose registry lies in another slot: the caller
--   registers the date's Part before the call);
--   ARGV[1] the date ("date=YYYY-MM-DD"), ARGV[2] the table's registry
--   member, ARGV[3] '1' to write, '0' to only report.
-- An entry counts when its field is a file path of this date, which is
-- what patch_index looks up (so the counters then match what its deletes
-- subtract): one file in its hour folder, and the size and row count
-- patch_index reads from it. The call sees the date as no patch_index call
-- is halfway through it, so the counters it sets are exact, and every
-- later call keeps them so (they change by deltas).
-- Returns: the date's stored files, bytes and rows fields (false when
-- absent), its recounted files, bytes and rows, then per folder of the
-- date whose count differs: its name, the stored count (false when
-- absent), the recount.
local files, folders, stats, registry = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local date, member, write = ARGV[1], ARGV[2], ARGV[3] == '1'

local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    error({err = 'WRONGTYPE recount_date: key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want .. '; nothing was written'}, 0)
  end
end
check_type(files, 'hash')
check_type(folders, 'hash')
check_type(stats, 'hash')
if registry then check_type(registry, 'set') end

-- A file path of this date: date=…/hour=00-23/<name of 1-128 [A-Za-z0-9_-]>.<N: 1-6 digits, no leading 0>.parquet
local prefix = date .. '/hour='
local function hour_of(p)
  if string.sub(p, 1, 21) ~= prefix then return nil end
  local h, name, n = string.match(p, '^(%d%d)/([%w_%-]+)%.([1-9]%d*)%.parquet$', 22)
  if not h or tonumber(h) > 23 or string.len(name) > 128 or string.len(n) > 6 then return nil end
  return h
end

local count = {}
local nfiles, nbytes, nrows = 0, 0, 0
local seen = {}
local cursor = '0'
repeat
  local r = redis.call('HSCAN', files, cursor, 'COUNT', 1000)
  cursor = r[1]
  local kv = r[2]
  for i = 1, #kv, 2 do
    local p = kv[i]
    local h = not seen[p] and hour_of(p)
    if h then
      seen[p] = true
      count[h] = (count[h] or 0) + 1
      local s, w = size_rows(kv[i + 1])
      nfiles, nbytes, nrows = nfiles + 1, nbytes + s, nrows + w
    end
  end
until cursor == '0'
if nbytes >= 9007199254740992 or nrows >= 9007199254740992 then
  error({err = 'RANGE recount_date: the sizes or row counts of ' .. files .. ' sum to 2^53 or more, beyond exact arithmetic; nothing was written'}, 0)
end

local function fmt(v) return string.format('%d', v) end
local out = {}
local sf = {'files:' .. date, 'bytes:' .. date, 'rows:' .. date}
local old = redis.call('HMGET', stats, sf[1], sf[2], sf[3])
local new = {fmt(nfiles), fmt(nbytes), fmt(nrows)}
for i = 1, 3 do out[i] = old[i] end
for i = 1, 3 do out[3 + i] = new[i] end

local dirs = {}
for h = 0, 23 do dirs[h + 1] = prefix .. string.format('%02d', h) end
local cur = redis.call('HMGET', folders, unpack(dirs))
local fset, fdel = {}, {}
for h = 0, 23 do
  local n = count[string.format('%02d', h)] or 0
  local o = cur[h + 1]
  if (n == 0 and o) or (n ~= 0 and o ~= fmt(n)) then
    out[#out + 1], out[#out + 2], out[#out + 3] = dirs[h + 1], o, fmt(n)
    if n == 0 then
      fdel[#fdel + 1] = dirs[h + 1]
    else
      fset[#fset + 1], fset[#fset + 2] = dirs[h + 1], fmt(n)
    end
  end
end

if write then
  if #fset > 0 then redis.call('HSET', folders, unpack(fset)) end
  if #fdel > 0 then redis.call('HDEL', folders, unpack(fdel)) end
  -- As patch_index keeps them: a date's fields exist while it has files.
  if nfiles == 0 then
    redis.call('HDEL', stats, sf[1], sf[2], sf[3])
  elseif old[1] ~= new[1] or old[2] ~= new[2] or old[3] ~= new[3] then
    redis.call('HSET', stats, sf[1], new[1], sf[2], new[2], sf[3], new[3])
  end
  if registry then redis.call('SADD', registry, member) end
end
return out
