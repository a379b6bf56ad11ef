-- naive_apply.lua: the per-event baseline of 'indexer bench', NOT part of
-- the indexer. It is the design the indexer replaces, modelled on GigAPI's
-- own library: one script call per event, which decodes the event with
-- cjson, builds its keys itself and stores each added file's entry
-- re-encoded with cjson. Like that library it is neither idempotent nor
-- atomic across events (a repeated create counts a file twice).
--
-- ARGV[1]: one event, JSON (schema v1). Returns 1.
local e = cjson.decode(ARGV[1])
local folders = 'folders:' .. e.database .. ':' .. e.table

local function files_key(path)
  return 'files:' .. e.database .. ':' .. e.table .. ':' .. string.match(path, '^([^/]+)/')
end

local function dir(path)
  return string.match(path, '^(.+)/[^/]+$')
end

local function add(f)
  redis.call('HSET', files_key(f.path), f.path, cjson.encode(f))
  redis.call('HINCRBY', folders, dir(f.path), 1)
end

local function remove(f)
  if redis.call('HDEL', files_key(f.path), f.path) == 1 then
    if redis.call('HINCRBY', folders, dir(f.path), -1) <= 0 then
      redis.call('HDEL', folders, dir(f.path))
    end
  end
end

if e.type == 'file.created' then
  add(e)
elseif e.type == 'file.deleted' then
  remove(e)
else
  for _, f in ipairs(e.add or {}) do add(f) end
  for _, f in ipairs(e.remove or {}) do remove(f) end
end
return 1
