-- Give an order's coupon use back (a refused checkout, expiry, cancel,
-- refund, reconciliation). Idempotent: only the call that removes the claim acts.
-- KEYS[1] uses  KEYS[2] buyers  KEYS[3] claims   ARGV[1] order_no
-- Returns 1 when given back now, 0 when the order held no use.
local raw = redis.call("HGET", KEYS[3], ARGV[1])
if not raw then return 0 end
local claim = cjson.decode(raw)
redis.call("HDEL", KEYS[3], ARGV[1])
if redis.call("EXISTS", KEYS[1]) == 1 and redis.call("DECR", KEYS[1]) < 0 then redis.call("SET", KEYS[1], 0) end
if redis.call("HINCRBY", KEYS[2], claim.buyer, -1) <= 0 then redis.call("HDEL", KEYS[2], claim.buyer) end
return 1
