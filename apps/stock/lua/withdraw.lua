-- Take units off the stock counter only if that many are free: a merchant
-- lowers a product's stock number during a live sale
-- (apps.catalog.services.product_stock_set), before the database commits it,
-- so checkouts can never reserve what the lower number no longer holds.
-- KEYS[1] stock   ARGV[1] units (> 0)
-- Returns {"ok", stock left} | {"short", stock free (nothing taken)}
--   | {"unknown"} (not warmed: the warm-up counts the record instead)
local stock = redis.call("GET", KEYS[1])
if not stock then return {"unknown"} end
local units = tonumber(ARGV[1])
if tonumber(stock) < units then return {"short", tonumber(stock)} end
return {"ok", redis.call("DECRBY", KEYS[1], units)}
