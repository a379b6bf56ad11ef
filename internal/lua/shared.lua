-- shared: functions several scripts use, put after their first line by
-- withShared (shared.go); a script using them says so at its top.

-- size_rows reads size_bytes and row_count of an entry. Entries in GigAPI's
-- Go field order (indexer's) have them right after path, whose value holds
-- no quote; others (cjson-encoded by GigAPI's library) are decoded.
-- (Plain finds return positions: no string is made, and Lua hashes every
-- string it makes.)
local function size_rows(v)
  if string.find(v, '{"layer":"', 1, true) == 1 then
    local at = string.find(v, '","size_bytes":', 11, true)
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

-- idname is the part of an item id naming its first path, from
-- "<name>.<N>": itself up to 110 characters, else its first 40, ':' and
-- its SHA-1 in hex, so that every id fits the event contract's 128
-- characters (idName in internal/index/queue.go computes the same).
local function idname(s)
  if string.len(s) <= 110 then return s end
  return string.sub(s, 1, 40) .. ':' .. redis.sha1hex(s)
end
