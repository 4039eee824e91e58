-- SetOffline: forget device ARGV[1] only if it is still recorded on node
-- ARGV[2], so a late disconnect from an old node cannot hide the device's
-- newer session elsewhere. KEYS as in presence_set.lua. Returns 1 if the
-- device was removed.
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  return 1
end
return 0
