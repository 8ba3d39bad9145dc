-- An order that needed attention (its keys ran short) is refunded. Its
-- reservation ended at the shortfall, but its buyers' shares stayed counted,
-- as such an order counts towards their limits; now they drop.
-- KEYS[1] buyers   ARGV[1] quantity   ARGV[2..] buyer identities
for i = 2, #ARGV do
  if redis.call("HINCRBY", KEYS[1], ARGV[i], -tonumber(ARGV[1])) <= 0 then redis.call("HDEL", KEYS[1], ARGV[i]) end
end
return 1
