-- Take one use of a coupon for an order, atomically (the coupon's own slot,
-- {c:<id>}; run just before checkout.lua, given back if checkout refuses).
-- KEYS[1] uses   KEYS[2] buyers (identity -> uses)   KEYS[3] claims (order_no -> {buyer, at})
-- KEYS[4] the checkout's idempotency key on this coupon (its order number)
-- ARGV[1] order_no  ARGV[2] buyer identity  ARGV[3] total cap (-1 = none)  ARGV[4] per-buyer cap (-1 = none)
-- ARGV[5] ttl (s) of KEYS[4]; 0 = no idempotency key
-- A request with an idempotency key whose order number is recorded here (a
-- double click, a retry) acts for that order number, not its own: its first
-- try may hold the use and not have reserved yet.
-- Returns {"taken", order_no} (taken now) | {"held", order_no} (that order holds it already)
--   | {"unknown"} (not counted: rebuild first) | {"used_up"} | {"limit_exceeded"}
local uses = redis.call("GET", KEYS[1])
if not uses then return {"unknown"} end
local order_no, ttl = ARGV[1], tonumber(ARGV[5])
if ttl > 0 then order_no = redis.call("GET", KEYS[4]) or order_no end
if redis.call("HEXISTS", KEYS[3], order_no) == 1 then return {"held", order_no} end
local cap, per_buyer = tonumber(ARGV[3]), tonumber(ARGV[4])
if cap >= 0 and tonumber(uses) >= cap then return {"used_up"} end
if per_buyer >= 0 and tonumber(redis.call("HGET", KEYS[2], ARGV[2]) or "0") >= per_buyer then
  return {"limit_exceeded"}
end
local t = redis.call("TIME")
redis.call("INCR", KEYS[1])
redis.call("HINCRBY", KEYS[2], ARGV[2], 1)
redis.call("HSET", KEYS[3], order_no,
  cjson.encode({buyer = ARGV[2], at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}))
if ttl > 0 then redis.call("SET", KEYS[4], order_no, "EX", ttl, "NX") end
return {"taken", order_no}
