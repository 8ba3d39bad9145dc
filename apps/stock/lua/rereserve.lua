-- Take stock again for an order paid after its reservation expired.
-- KEYS[1] stock  KEYS[2] buyers  KEYS[3] reservations
-- ARGV[1] order_no  ARGV[2] buyer id  ARGV[3] quantity  ARGV[4] reservation record
-- Returns 1 when the stock was taken (or the order still held it), 0 when too little is left,
-- -1 when stock is unknown (not warmed).
local qty = tonumber(ARGV[3])
if redis.call("HEXISTS", KEYS[3], ARGV[1]) == 1 then return 1 end
local stock = redis.call("GET", KEYS[1])
if not stock then return -1 end
if tonumber(stock) < qty then return 0 end
redis.call("DECRBY", KEYS[1], qty)
redis.call("HINCRBY", KEYS[2], ARGV[2], qty)
redis.call("HSET", KEYS[3], ARGV[1], ARGV[4])
return 1
