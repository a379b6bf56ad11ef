#!lua
-- stream_trimmed: count, once for the whole group, the entries removed
-- from the stream (trimmed by MAXLEN or MINID) before the group read them.
-- StreamTrimmed in stream.go builds KEYS and ARGV and documents them.
--
-- KEYS[1] the stream.
-- ARGV[1] group.
--
-- Redis counts the entries ever added to the stream and, while it can
-- tell, the entries the group read; an entry trimmed before the group got
-- to it is never read, so once the group has read up to the stream's last
-- entry its lag (entries added - entries read) is the number of entries it
-- will never read. The script then sets the group's read counter to the
-- entries added (XGROUP SETID to the same last-delivered id: delivery and
-- pending entries are unchanged), so each such entry is counted once, by
-- one caller, and returns how many. It returns 0 while the group has
-- entries left to read, and when Redis does not know the group's read
-- counter (a group created at an id without ENTRIESREAD, an XDEL in the
-- middle of the stream): then nothing can be counted.
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then
    local lag, read, last = f['lag'], f['entries-read'], f['last-delivered-id']
    if not lag or not read or lag <= 0 then return 0 end
    if #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1) > 0 then return 0 end
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', string.format('%d', read + lag))
    return lag
  end
end
return redis.error_reply('NOGROUP stream_trimmed: no consumer group ' .. ARGV[1] .. ' on stream ' .. KEYS[1])
