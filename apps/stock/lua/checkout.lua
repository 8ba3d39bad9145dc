-- Checkout: the one decision of the purchase path, atomic in Redis.
-- KEYS[1] stock   KEYS[2] rules   KEYS[3] buyers   KEYS[4] reservations
-- KEYS[5] persist queue           KEYS[6] idempotency key ("" part when none)
-- ARGV[1] order_no  ARGV[2] buyer id  ARGV[3] quantity  ARGV[4] token hash
-- ARGV[5] email     ARGV[6] idempotency value ("" = no key)  ARGV[7] idempotency ttl (s)
-- ARGV[8] reservation ttl (s)
-- Returns {code, ...}: {"ok", order_no, remaining} | {"duplicate", idempotency value}
--   | {"not_found"} | {"sale_paused"} | {"sale_not_started"} | {"sale_ended"}
--   | {"too_many", max_per_order} | {"sold_out"} | {"limit_exceeded", limit, held}
local stock_key, rules_key, buyers_key, reservations_key, queue_key, idem_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local order_no, buyer, qty, token_hash, email = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local idem_value, idem_ttl, reservation_ttl = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])

if idem_value ~= "" then
  local first = redis.call("GET", idem_key)
  if first then return {"duplicate", first} end
end

local rules = redis.call("HMGET", rules_key, "active", "starts", "ends", "max_per_order", "per_buyer_limit",
  "price", "currency", "paused")
local stock = redis.call("GET", stock_key)
-- Stock or rules unknown (not warmed yet, or Redis lost its data): fail closed.
if not stock or not rules[1] then return {"sale_paused"} end
if rules[1] ~= "1" then return {"not_found"} end
if rules[8] == "1" then return {"sale_paused"} end

local now = redis.call("TIME")
local now_s = tonumber(now[1])
local starts, ends = tonumber(rules[2]), tonumber(rules[3])
if starts >= 0 and now_s < starts then return {"sale_not_started"} end
if ends >= 0 and now_s >= ends then return {"sale_ended"} end

local max_per_order = tonumber(rules[4])
if qty > max_per_order then return {"too_many", max_per_order} end

if tonumber(stock) < qty then return {"sold_out"} end

local limit = tonumber(rules[5])
local held = tonumber(redis.call("HGET", buyers_key, buyer) or "0")
if held + qty > limit then return {"limit_exceeded", limit, held} end

local remaining = redis.call("DECRBY", stock_key, qty)
redis.call("HINCRBY", buyers_key, buyer, qty)
local record = cjson.encode({
  order_no = order_no, buyer = buyer, email = email, quantity = qty, token_hash = token_hash,
  unit_price = rules[6], currency = rules[7], created_at = now_s, reserved_until = now_s + reservation_ttl,
})
redis.call("HSET", reservations_key, order_no, record)
redis.call("RPUSH", queue_key, record)
if idem_value ~= "" then redis.call("SET", idem_key, idem_value, "EX", idem_ttl) end
return {"ok", order_no, remaining}
