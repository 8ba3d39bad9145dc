-- Take stock again for an order paid after its reservation expired, or for
-- an order that needed attention and is retried.
-- KEYS[1] stock  KEYS[2] buyers  KEYS[3] reservations  KEYS[4] unpaid  KEYS[5] held
-- ARGV[1] order_no  ARGV[2] reservation record (JSON, marked paid)
-- ARGV[3] "1" = its buyers are still counted (an order that needed attention
-- kept its share of their limits, in KEYS[5]), so only the stock is taken and
-- its held entry goes back into the reservation
-- Returns 1 when the stock was taken (or the order still held it: its expiry's
-- release has not run yet, and now never will), 0 when too little is left,
-- -1 when stock is unknown (not warmed).
local held = redis.call("HGET", KEYS[3], ARGV[1])
if held then
  local r = cjson.decode(held)
  if not r.paid then
    for _, buyer in ipairs(r.buyers) do
      if redis.call("HINCRBY", KEYS[4], buyer, -1) <= 0 then redis.call("HDEL", KEYS[4], buyer) end
    end
    r.paid = true
    redis.call("HSET", KEYS[3], ARGV[1], cjson.encode(r))
  end
  return 1
end
local stock = redis.call("GET", KEYS[1])
if not stock then return -1 end
local r = cjson.decode(ARGV[2])
if tonumber(stock) < r.quantity then return 0 end
redis.call("DECRBY", KEYS[1], r.quantity)
if ARGV[3] == "1" then
  redis.call("HDEL", KEYS[5], ARGV[1])
else
  for _, buyer in ipairs(r.buyers) do redis.call("HINCRBY", KEYS[2], buyer, r.quantity) end
end
redis.call("HSET", KEYS[3], ARGV[1], ARGV[2])
return 1
