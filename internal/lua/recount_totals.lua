#!lua
-- recount_totals: set a table's statistics totals (files, bytes, rows) to
-- the sums of its per-date fields, atomically (when ARGV[1] is '1'; '0'
-- only reports). KEYS[1] is the statistics hash. patch_index changes a
-- date's fields and the totals by the same deltas in one call, so totals
-- equal to the sums stay so. Sums are exact (two base-10^9 limbs; Lua's
-- doubles alone are exact only below 2^53).
-- Returns the stored files, bytes and rows (false when absent), then the
-- sums, as decimal strings.
local stats, write = KEYS[1], ARGV[1] == '1'
local t = redis.call('TYPE', stats)['ok']
if t ~= 'none' and t ~= 'hash' then
  error({err = 'WRONGTYPE recount_totals: key ' .. stats .. ' holds a ' .. t .. ', expected a hash; nothing was written'}, 0)
end

local B = 1000000000
local function add(acc, s)
  if not string.match(s, '^%-?%d+$') or string.len(s) > 20 then return end
  local neg = string.sub(s, 1, 1) == '-'
  if neg then s = string.sub(s, 2) end
  local n = string.len(s)
  local lo = tonumber(string.sub(s, math.max(1, n - 8)))
  local hi = n > 9 and tonumber(string.sub(s, 1, n - 9)) or 0
  if neg then hi, lo = -hi, -lo end
  acc[1], acc[2] = acc[1] + hi, acc[2] + lo
end
local function format(acc)
  local hi, lo = acc[1], acc[2]
  local carry = math.floor(lo / B)
  hi, lo = hi + carry, lo - carry * B -- lo in [0, B)
  if hi < 0 and lo > 0 then hi, lo = hi + 1, lo - B end -- same sign as hi
  if hi == 0 then return string.format('%d', lo) end
  if hi < 0 then return '-' .. string.format('%d%09d', -hi, -lo) end
  return string.format('%d%09d', hi, lo)
end

local sums = {files = {0, 0}, bytes = {0, 0}, rows = {0, 0}}
local kv = redis.call('HGETALL', stats)
for i = 1, #kv, 2 do
  local name = string.match(kv[i], '^(%a+):date=')
  if name and sums[name] then add(sums[name], kv[i + 1]) end
end
local names = {'files', 'bytes', 'rows'}
local old = redis.call('HMGET', stats, 'files', 'bytes', 'rows')
local out, set = {}, {}
for i, name in ipairs(names) do
  local v = format(sums[name])
  out[i], out[3 + i] = old[i], v
  if old[i] ~= v then
    set[#set + 1], set[#set + 2] = name, v
  end
end
if write and #set > 0 then redis.call('HSET', stats, unpack(set)) end
return out
