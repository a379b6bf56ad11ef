#!lua
-- stream_init_read_counter: give a consumer group that has read nothing
-- yet a read counter of 0, so Redis counts from the start every entry the
-- group reads, and the entries trimmed before it read them show as its lag
-- (see stream_trimmed.lua). StreamInitReadCounter in stream.go builds KEYS
-- and ARGV and documents them.
--
-- KEYS[1] the stream.
-- ARGV[1] group.
--
-- A group created at the start of the stream without ENTRIESREAD (by an
-- older 'indexer setup', or XGROUP CREATE ... 0 by hand) has no read
-- counter: at its first read Redis estimates one from the stream's first
-- entry, which silently takes every entry trimmed before that read as read.
-- Only a group still at 0-0 with no counter is changed (XGROUP SETID to the
-- same 0-0, ENTRIESREAD 0); pending entries are untouched. Returns 1 if it
-- set the counter, else 0.
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then
    if f['last-delivered-id'] ~= '0-0' or f['entries-read'] then return 0 end
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], '0-0', 'ENTRIESREAD', '0')
    return 1
  end
end
return redis.error_reply('NOGROUP stream_init_read_counter: no consumer group ' .. ARGV[1] .. ' on stream ' .. KEYS[1])
