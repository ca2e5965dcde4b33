-- migrate:up

-- The answers kept for retried booking requests go after IDEMPOTENCY_KEPT (30 days) in the
-- retention round. A block-range index: rows come in time order, it costs a booking next
-- to nothing to keep (a b-tree would add an entry per booking) and finds the old blocks.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys USING brin (created_at);

-- migrate:down

DROP INDEX idempotency_keys_created_at;
