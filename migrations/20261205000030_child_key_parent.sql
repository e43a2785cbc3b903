-- The parent run named in a child run's idempotency key (`child:{parent}:{node}:{key}`),
-- which is stored with the run before its parent link is.
CREATE FUNCTION key_parent(key text) RETURNS uuid
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN key ~ '^child:[0-9a-f-]{36}:' THEN substr(key, 7, 36)::uuid END
$$;
