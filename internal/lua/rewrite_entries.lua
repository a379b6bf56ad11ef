#!lua
-- rewrite_entries: replace entries of KEYS[1] (a files: hash) with their
-- repaired form, each only while it still holds the value it was read
-- with (compare and set: a patch_index call may have deleted or a writer
-- changed it since). ARGV: triples of path, old value, new value.
-- Returns the number rewritten.
local t = redis.call('TYPE', KEYS[1])['ok']
if t ~= 'none' and t ~= 'hash' then
  error({err = 'WRONGTYPE rewrite_entries: key ' .. KEYS[1] .. ' holds a ' .. t .. ', expected a hash; nothing was written'}, 0)
end
local n = 0
for i = 1, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    n = n + 1
  end
end
return n
