-- migrate:up
-- Events written in the same transaction as the change that caused them (chassis.outbox).
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL,
    event_type  text NOT NULL,
    topic       text NOT NULL,
    key         text NOT NULL,
    value       bytea NOT NULL,
    headers     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
-- The relay reads unsent rows in id order; sent rows are cleaned by age.
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- migrate:down
DROP TABLE outbox;
