-- Release a route: compare-and-delete.
-- KEYS: 1 route key. ARGV: 1 server.
-- Returns 1 (deleted) or 0 (another server owns it, or nobody).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
