-- Checkout: the one decision of the purchase path, atomic in Redis.
-- KEYS[1] stock   KEYS[2] rules (incl. "tiers": "min_qty:price ..." ascending)   KEYS[3] buyers (identity -> quantity held or bought)
-- KEYS[4] reservations   KEYS[5] persist queue   KEYS[6] idempotency key
-- KEYS[7] unpaid (identity -> unpaid reservations)   KEYS[8] token bucket
-- ARGV[1] order_no  ARGV[2] quantity  ARGV[3] token hash  ARGV[4] email
-- ARGV[5] idempotency value ("" = no key)  ARGV[6] idempotency ttl (s)  ARGV[7] reservation ttl (s)
-- ARGV[8] bucket rate (per s, 0 = no cap)  ARGV[9] bucket burst
-- ARGV[10] persist backlog limit (0 = none)
-- ARGV[11] captcha threshold (0 = off)  ARGV[12] strike window (s)  ARGV[13] "1" = captcha solved now
-- ARGV[14] strike field of the client's IP ("" = none)  ARGV[15] of its device ("" = none)
-- ARGV[16] the client address's identity for the unpaid cap ("" = not capped)  ARGV[17] that cap
-- ARGV[18] persist request mark ttl (ms)
-- ARGV[19] the buyer's language at checkout ("" = the shop's default): the order's mails speak it
-- ARGV[20] coupon id ("" = none; its use was taken by coupon_take.lua just before)
-- ARGV[21] coupon code  ARGV[22] its kind ("percent" | "fixed")  ARGV[23] its value (text)
-- ARGV[24] what the buyer typed in the product's checkout fields, encrypted ("" = none)
-- ARGV[25..] buyer identities (at least one)
-- KEYS[9] strikes (client field -> "count:first_seen_ms")
-- KEYS[10] persist request mark (set while a persist task for this product waits in the queue)
-- Returns {code, ...}: {"ok", order_no, remaining, 1 = the caller must publish a persist task}
--   | {"duplicate", idempotency value}
--   | {"rate_limited", retry_after_ms} | {"not_found"} | {"sale_paused"} | {"queue_full"}
--   | {"sale_not_started"} | {"sale_ended"} | {"too_many", max_per_order} | {"sold_out"}
--   | {"limit_exceeded", limit, held} | {"unpaid_limit", cap} | {"unpaid_limit", cap, "address"}
--   | {"captcha_required"}
local stock_key, rules_key, buyers_key, reservations_key, queue_key, idem_key, unpaid_key, bucket_key, strikes_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local persist_mark_key = KEYS[10]
local order_no, qty, token_hash, email = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local idem_value, idem_ttl, reservation_ttl = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local rate, burst, backlog_limit = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local captcha_threshold, strike_window, captcha_solved = tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13] == "1"
local strike_fields = {}
if ARGV[14] ~= "" then strike_fields[#strike_fields + 1] = ARGV[14] end
if ARGV[15] ~= "" then strike_fields[#strike_fields + 1] = ARGV[15] end
local client, client_cap = ARGV[16], tonumber(ARGV[17])
local persist_mark_ttl = tonumber(ARGV[18])
local language = ARGV[19]
local coupon_id, coupon_code, coupon_kind, coupon_value = ARGV[20], ARGV[21], ARGV[22], ARGV[23]
local input_values = ARGV[24]
local buyers = {}
for i = 25, #ARGV do buyers[#buyers + 1] = ARGV[i] end

local now = redis.call("TIME")
local now_s = tonumber(now[1])
local now_ms = now_s * 1000 + math.floor(tonumber(now[2]) / 1000)

-- The endpoint's cap, as a token bucket refilled at `rate` per second.
if rate > 0 then
  local bucket = redis.call("HMGET", bucket_key, "tokens", "at")
  local tokens, at = tonumber(bucket[1]) or burst, tonumber(bucket[2]) or now_ms
  tokens = math.min(burst, tokens + (now_ms - at) * rate / 1000)
  if tokens < 1 then
    redis.call("HSET", bucket_key, "tokens", tokens, "at", now_ms)
    return {"rate_limited", math.ceil((1 - tokens) * 1000 / rate)}
  end
  redis.call("HSET", bucket_key, "tokens", tokens - 1, "at", now_ms)
  redis.call("PEXPIRE", bucket_key, 60000)
end

if idem_value ~= "" then
  local first = redis.call("GET", idem_key)
  if first then return {"duplicate", first} end
end

-- A client with too many suspicious attempts on this product must solve a
-- captcha (checked by the caller before this call); solving it clears them.
if captcha_threshold > 0 and #strike_fields > 0 then
  if captcha_solved then
    redis.call("HDEL", strikes_key, unpack(strike_fields))
  else
    local seen = redis.call("HMGET", strikes_key, unpack(strike_fields))
    for i = 1, #strike_fields do
      if seen[i] then
        local c, t = string.match(seen[i], "(%d+):(%d+)")
        if now_ms - tonumber(t) < strike_window * 1000 and tonumber(c) >= captcha_threshold then
          return {"captcha_required"}
        end
      end
    end
  end
end

local rules = redis.call("HMGET", rules_key, "active", "starts", "ends", "max_per_order", "per_buyer_limit",
  "price", "currency", "paused", "max_unpaid", "overloaded", "tiers")
local stock = redis.call("GET", stock_key)
-- Stock or rules unknown (not warmed yet, or Redis lost its data): fail closed.
if not stock or not rules[1] then return {"sale_paused"} end
if rules[1] ~= "1" then return {"not_found"} end
if rules[8] == "1" then return {"sale_paused"} end
if rules[10] == "1" then return {"queue_full"} end
if backlog_limit > 0 and redis.call("LLEN", queue_key) >= backlog_limit then return {"queue_full"} end

local starts, ends = tonumber(rules[2]), tonumber(rules[3])
if starts >= 0 and now_s < starts then return {"sale_not_started"} end
if ends >= 0 and now_s >= ends then return {"sale_ended"} end

local max_per_order = tonumber(rules[4])
if qty > max_per_order then return {"too_many", max_per_order} end

if tonumber(stock) < qty then return {"sold_out"} end

-- Every identity the merchant counts by must be under the limits.
local limit, max_unpaid = tonumber(rules[5]), tonumber(rules[9])
local held = redis.call("HMGET", buyers_key, unpack(buyers))
for i = 1, #buyers do
  local h = tonumber(held[i] or "0")
  if h + qty > limit then return {"limit_exceeded", limit, h} end
end
local unpaid = redis.call("HMGET", unpaid_key, unpack(buyers))
for i = 1, #buyers do
  if tonumber(unpaid[i] or "0") >= max_unpaid then return {"unpaid_limit", max_unpaid} end
end
-- One address may hold only so many unpaid reservations, whatever emails it
-- gives. Its identity joins the reservation's buyers, so paying, expiry and
-- a rebuild free and recount it like theirs; only the per-buyer limits
-- (quantity, max_unpaid) ignore it unless the merchant counts by IP.
local counted = buyers
if client ~= "" then
  if tonumber(redis.call("HGET", unpaid_key, client) or "0") >= client_cap then
    return {"unpaid_limit", client_cap, "address"}
  end
  local listed = false
  for i = 1, #buyers do if buyers[i] == client then listed = true end end
  if not listed then
    counted = {unpack(buyers)}
    counted[#counted + 1] = client
  end
end

-- The unit price: the base price, or the wholesale tier with the highest
-- minimum quantity this order reaches ("10:4.50 50:4.00", ascending). The
-- price stays the merchant's text; Python does the money (apps/orders/pricing.py).
local unit_price = rules[6]
for min_qty, tier_price in string.gmatch(rules[11] or "", "(%d+):([%d%.]+)") do
  if tonumber(min_qty) <= qty then unit_price = tier_price end
end

local remaining = redis.call("DECRBY", stock_key, qty)
for i = 1, #counted do
  redis.call("HINCRBY", buyers_key, counted[i], qty)
  redis.call("HINCRBY", unpaid_key, counted[i], 1)
end
local reservation = {
  order_no = order_no, buyers = counted, email = email, quantity = qty, token_hash = token_hash,
  unit_price = unit_price, currency = rules[7], created_at = now_s, reserved_until = now_s + reservation_ttl,
  language = language,
}
if coupon_id ~= "" then
  -- The coupon's terms as they are now; apps/orders/pricing.py computes the discount.
  reservation.coupon_id = tonumber(coupon_id)
  reservation.coupon_code, reservation.coupon_kind, reservation.coupon_value = coupon_code, coupon_kind, coupon_value
end
if input_values ~= "" then reservation.input_values = input_values end
local record = cjson.encode(reservation)
redis.call("HSET", reservations_key, order_no, record)
redis.call("RPUSH", queue_key, record)
if idem_value ~= "" then redis.call("SET", idem_key, idem_value, "EX", idem_ttl) end
-- The first order of a burst asks for a persist task; the rest of the burst
-- rides on it (the task clears the mark as it starts, then drains them all).
local publish = redis.call("SET", persist_mark_key, "1", "NX", "PX", persist_mark_ttl) and 1 or 0
return {"ok", order_no, remaining, publish}
