-- Count one suspicious checkout attempt for each client field (hashed IP,
-- hashed device) on this product. A field's window starts at its first strike;
-- times are in milliseconds, so a short window is not cut by a second boundary.
-- KEYS[1] strikes   ARGV[1] window (s)   ARGV[2..] fields
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1]) * 1000
for i = 2, #ARGV do
  local count, since = 0, now
  local v = redis.call("HGET", KEYS[1], ARGV[i])
  if v then
    local c, t = string.match(v, "(%d+):(%d+)")
    if now - tonumber(t) < window then count, since = tonumber(c), tonumber(t) end
  end
  redis.call("HSET", KEYS[1], ARGV[i], (count + 1) .. ":" .. since)
end
redis.call("PEXPIRE", KEYS[1], window)
return 1
