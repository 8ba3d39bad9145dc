-- An order that needed attention (its keys ran short) is refunded: its
-- buyers' shares, kept in the held hash when its reservation ended, drop now.
-- Idempotent: only the call that takes the held entry acts.
-- KEYS[1] buyers  KEYS[2] held   ARGV[1] order_no
-- Returns 1 when the shares dropped now, 0 when there was nothing held.
local raw = redis.call("HGET", KEYS[2], ARGV[1])
if not raw then return 0 end
local h = cjson.decode(raw)
redis.call("HDEL", KEYS[2], ARGV[1])
for _, buyer in ipairs(h.buyers) do
  if redis.call("HINCRBY", KEYS[1], buyer, -h.quantity) <= 0 then redis.call("HDEL", KEYS[1], buyer) end
end
return 1
