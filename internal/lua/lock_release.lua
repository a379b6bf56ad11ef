#!lua
-- lock_release: delete a lock key if, and only if, it still holds the
-- caller's token, in one atomic call: a lock that expired and was taken by
-- another holder meanwhile is left alone. ReleaseLock in lock.go builds
-- KEYS and ARGV and documents them.
--
-- KEYS[1] the lock key. ARGV[1] the holder's token.
-- Returns 1 if the lock was released, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
