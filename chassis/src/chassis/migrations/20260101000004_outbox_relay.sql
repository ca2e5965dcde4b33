-- migrate:up
-- The relay's fencing token and hand-over state (chassis.outbox). One row per schema.
-- `epoch` is bumped by every relay that takes the lead; a relay claims a batch only while the
-- epoch is still its own, and records the ids it may have in flight, so a successor waits for
-- them instead of publishing them a second time.
CREATE TABLE outbox_relay (
    only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    epoch      bigint NOT NULL DEFAULT 0,
    in_flight  int8multirange NOT NULL DEFAULT '{}',
    -- True while the leader has nothing to do and waits for a wake-up: only then do writers
    -- NOTIFY (NOTIFY serialises committing transactions on a cluster-wide lock).
    sleeping   boolean NOT NULL DEFAULT true,
    leader     text,
    led_since  timestamptz
);
INSERT INTO outbox_relay DEFAULT VALUES;

-- Runs just before a transaction that wrote outbox rows commits (deferred), so the relay's
-- `sleeping` flag is read as late as possible.
CREATE FUNCTION outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT sleeping FROM outbox_relay) THEN
        PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER outbox_wake AFTER INSERT ON outbox
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outbox_wake();

-- migrate:down
DROP TRIGGER outbox_wake ON outbox;
DROP FUNCTION outbox_wake();
DROP TABLE outbox_relay;
