-- migrate:up
-- One row per event a consumer has applied, written with its effect (chassis.inbox).
CREATE TABLE inbox (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    event_type   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- migrate:down
DROP TABLE inbox;
