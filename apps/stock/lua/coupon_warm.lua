-- Write a coupon's use counters from the record (MariaDB + queued
-- reservations), only while they are unknown: takes are refused meanwhile
-- ("unknown"), so nothing races it.
-- KEYS[1] uses  KEYS[2] buyers  KEYS[3] claims   ARGV[1] JSON {order_no: {buyer, at}}
-- Returns 1 when written now, 0 when the counters were there already.
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("DEL", KEYS[2], KEYS[3])
local n = 0
for order_no, claim in pairs(cjson.decode(ARGV[1])) do
  redis.call("HSET", KEYS[3], order_no, cjson.encode(claim))
  redis.call("HINCRBY", KEYS[2], claim.buyer, 1)
  n = n + 1
end
redis.call("SET", KEYS[1], n)
return 1
