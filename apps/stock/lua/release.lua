-- Release a reservation (expiry, cancel, refund): its stock returns, and each
-- buyer identity's counts drop. Idempotent: only the call that removes the
-- reservation acts.
-- KEYS[1] stock  KEYS[2] buyers  KEYS[3] reservations  KEYS[4] unpaid
-- ARGV[1] order_no  ARGV[2] "1" = only if unpaid (expiry: a payment that won
-- the race keeps its stock)
-- Returns 1 when released now, 0 when it was already gone (or paid, with ARGV[2]).
local raw = redis.call("HGET", KEYS[3], ARGV[1])
if not raw then return 0 end
local r = cjson.decode(raw)
if r.paid and ARGV[2] == "1" then return 0 end
redis.call("HDEL", KEYS[3], ARGV[1])
-- After a rebuild the stock key may be missing; the rebuild already counted this.
if redis.call("EXISTS", KEYS[1]) == 1 then redis.call("INCRBY", KEYS[1], r.quantity) end
for _, buyer in ipairs(r.buyers) do
  if redis.call("HINCRBY", KEYS[2], buyer, -r.quantity) <= 0 then redis.call("HDEL", KEYS[2], buyer) end
  if not r.paid and redis.call("HINCRBY", KEYS[4], buyer, -1) <= 0 then redis.call("HDEL", KEYS[4], buyer) end
end
return 1
