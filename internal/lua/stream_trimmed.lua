#!lua
-- stream_trimmed: count, once for the whole group, the entries removed
-- from the stream (trimmed by MAXLEN or MINID) before the group read them;
-- or, called with 'init', make Redis count the reads of a group that has
-- read nothing yet. StreamTrimmed and StreamInitReadCounter in stream.go
-- build KEYS and ARGV and document them.
--
-- KEYS[1] the stream.
-- ARGV[1] group, ARGV[2] 'count' or 'init'.
--
-- Redis counts the entries ever added to the stream and, while it can
-- tell, the entries the group read; an entry trimmed before the group got
-- to it is never read, so once the group has read up to the stream's last
-- entry its lag (entries added - entries read) is the number of entries it
-- will never read.
--
-- count: once the group has read up to the stream's last entry, set its
-- read counter to the entries added (XGROUP SETID to the same
-- last-delivered id: delivery and pending entries are unchanged), so each
-- such entry is counted once, by one caller, and return how many. Return 0
-- while the group has entries left to read, and when Redis does not know
-- the group's read counter (a group created at an id without ENTRIESREAD,
-- an XDEL in the middle of the stream): then nothing can be counted.
--
-- init: a group created at the start of the stream without ENTRIESREAD (by
-- an older 'indexer setup', or XGROUP CREATE ... 0 by hand) has no read
-- counter: at its first read Redis estimates one from the stream's first
-- entry, which silently takes every entry trimmed before that read as
-- read. A group still at 0-0 with no counter gets the counter 0 (XGROUP
-- SETID to the same 0-0, ENTRIESREAD 0); return 1 if it did, else 0.
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, g in ipairs(groups) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  if f['name'] == ARGV[1] then
    local lag, read, last = f['lag'], f['entries-read'], f['last-delivered-id']
    if ARGV[2] == 'init' then
      if last ~= '0-0' or read then return 0 end
      redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], '0-0', 'ENTRIESREAD', '0')
      return 1
    end
    if not lag or not read or lag <= 0 then return 0 end
    if #redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1) > 0 then return 0 end
    redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], last, 'ENTRIESREAD', string.format('%d', read + lag))
    return lag
  end
end
return redis.error_reply('NOGROUP stream_trimmed: no consumer group ' .. ARGV[1] .. ' on stream ' .. KEYS[1])
