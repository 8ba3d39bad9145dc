-- Take stock again for an order paid after its reservation expired.
-- KEYS[1] stock  KEYS[2] buyers  KEYS[3] reservations
-- ARGV[1] order_no  ARGV[2] reservation record (JSON, marked paid)
-- Returns 1 when the stock was taken (or the order still held it), 0 when too little is left,
-- -1 when stock is unknown (not warmed).
if redis.call("HEXISTS", KEYS[3], ARGV[1]) == 1 then return 1 end
local stock = redis.call("GET", KEYS[1])
if not stock then return -1 end
local r = cjson.decode(ARGV[2])
if tonumber(stock) < r.quantity then return 0 end
redis.call("DECRBY", KEYS[1], r.quantity)
for _, buyer in ipairs(r.buyers) do redis.call("HINCRBY", KEYS[2], buyer, r.quantity) end
redis.call("HSET", KEYS[3], ARGV[1], ARGV[2])
return 1
