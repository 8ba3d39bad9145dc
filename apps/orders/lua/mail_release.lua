-- Give back an order's mail lease, only if it is still the caller's: a lease
-- that expired and was taken by another worker (or turned into "sent") stays.
-- KEYS[1] the order's mail claim; ARGV[1] the caller's lease token.
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
