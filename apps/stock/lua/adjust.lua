-- Move the stock counter by ARGV[1] (may be negative) if it exists.
-- KEYS[1] stock. Returns the new value, or false when the stock is not warmed.
if redis.call("EXISTS", KEYS[1]) == 0 then return false end
return redis.call("INCRBY", KEYS[1], tonumber(ARGV[1]))
