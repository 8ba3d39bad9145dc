-- A reservation was paid: it no longer counts as unpaid for its buyers (their
-- slot for another unpaid reservation frees up); its stock stays taken.
-- ARGV[2] = "1" also ends the reservation (the order was delivered or holds no keys).
-- ARGV[3] = "1" with it: the order holds no keys but still counts towards its
-- buyers' limits (needs attention), so its buyers and quantity are kept in
-- KEYS[3] for a refund or a retry to settle.
-- KEYS[1] reservations  KEYS[2] unpaid  KEYS[3] held   ARGV[1] order_no  ARGV[2] finish  ARGV[3] held
-- Returns 1 when the reservation was there, 0 when it was gone.
local raw = redis.call("HGET", KEYS[1], ARGV[1])
if not raw then return 0 end
local r = cjson.decode(raw)
if not r.paid then
  for _, buyer in ipairs(r.buyers) do
    if redis.call("HINCRBY", KEYS[2], buyer, -1) <= 0 then redis.call("HDEL", KEYS[2], buyer) end
  end
  r.paid = true
end
if ARGV[2] == "1" then
  redis.call("HDEL", KEYS[1], ARGV[1])
  if ARGV[3] == "1" then
    redis.call("HSET", KEYS[3], ARGV[1], cjson.encode({buyers = r.buyers, quantity = r.quantity}))
  end
else
  redis.call("HSET", KEYS[1], ARGV[1], cjson.encode(r))
end
return 1
