-- Rebuild a product's gate from the database's figures, only while its stock is
-- unknown (checkout is paused then, so nothing can race the rebuild).
-- KEYS[1] stock  KEYS[2] buyers  KEYS[3] reservations  KEYS[4] unpaid  KEYS[5] held
-- ARGV[1] stock value  ARGV[2] JSON {buyer: quantity}  ARGV[3] JSON {order_no: record JSON}
-- ARGV[4] JSON {buyer: unpaid reservations}  ARGV[5] JSON {order_no: held JSON}
-- Returns 1 when rebuilt, 0 when the stock was already there.
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
redis.call("DEL", KEYS[2], KEYS[3], KEYS[4], KEYS[5])
for buyer, qty in pairs(cjson.decode(ARGV[2])) do redis.call("HSET", KEYS[2], buyer, qty) end
for order_no, record in pairs(cjson.decode(ARGV[3])) do redis.call("HSET", KEYS[3], order_no, record) end
for buyer, n in pairs(cjson.decode(ARGV[4])) do redis.call("HSET", KEYS[4], buyer, n) end
for order_no, held in pairs(cjson.decode(ARGV[5])) do redis.call("HSET", KEYS[5], order_no, held) end
redis.call("SET", KEYS[1], tonumber(ARGV[1]))
return 1
