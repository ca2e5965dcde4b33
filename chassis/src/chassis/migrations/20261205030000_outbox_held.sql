-- migrate:up

-- An outbox row the relay will not publish (its topic is not one the service declares: a
-- row written by another version of the code, during a rolling deploy or after a
-- rollback) is held, with why, instead of stopping every row behind it. A relay that
-- declares its topic gives it back when it takes the lead.
ALTER TABLE outbox ADD COLUMN held text;

-- migrate:down

ALTER TABLE outbox DROP COLUMN held;
