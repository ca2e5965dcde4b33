-- migrate:up
-- The order in which the ledger applied events, to check per-key order.
ALTER TABLE entries ADD COLUMN rating_count int NOT NULL DEFAULT 1, ADD COLUMN seq bigserial;

-- migrate:down
ALTER TABLE entries DROP COLUMN rating_count, DROP COLUMN seq;
