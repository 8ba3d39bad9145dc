-- Release a reservation (expiry, cancel, refund): its stock returns, the buyer's
-- count drops. Idempotent: only the call that removes the reservation acts.
-- KEYS[1] stock  KEYS[2] buyers  KEYS[3] reservations
-- ARGV[1] order_no  ARGV[2] buyer id  ARGV[3] quantity
-- Returns 1 when released now, 0 when it was already gone.
local qty = tonumber(ARGV[3])
if redis.call("HDEL", KEYS[3], ARGV[1]) == 0 then return 0 end
-- After a rebuild the stock key may be missing; the rebuild already counted this.
if redis.call("EXISTS", KEYS[1]) == 1 then redis.call("INCRBY", KEYS[1], qty) end
local left = redis.call("HINCRBY", KEYS[2], ARGV[2], -qty)
if left <= 0 then redis.call("HDEL", KEYS[2], ARGV[2]) end
return 1
