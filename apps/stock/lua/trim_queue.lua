-- Drop the first ARGV[2] entries of the persist queue, but only while the caller
-- still holds the drain lock: a worker whose lock expired must not trim entries
-- that another worker is now handling.
-- KEYS[1] persist queue  KEYS[2] drain lock   ARGV[1] lock token  ARGV[2] count
if redis.call("GET", KEYS[2]) ~= ARGV[1] then return 0 end
redis.call("LTRIM", KEYS[1], tonumber(ARGV[2]), -1)
return 1
