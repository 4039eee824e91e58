-- SetOnline: record device ARGV[1] as online on node ARGV[2] for ARGV[3]
-- milliseconds, by Redis's clock. KEYS[1] is the user's sorted set of device
-- expiries (Unix ms), KEYS[2] the user's hash of device nodes. Expired
-- devices are pruned here, so both keys stay as small as the user's live
-- devices, and both keys expire with the user's last device.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if #expired > 0 then
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('HDEL', KEYS[2], unpack(expired))
end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[3])), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local keep = string.format('%d', tonumber(last[2]) - now)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return 1
