-- migrate:up
-- Wake a sleeping relay once per INSERT statement instead of once per row at commit: a
-- deferred row trigger queued an event per row and cost writers about a fifth of their
-- commit rate even while the relay was awake (bench/outbox.py). The flag is now read when
-- the statement ends; for the one-statement writes of `chassis.outbox.write` that is the
-- commit. A wake-up missed because the relay fell asleep between a writer's INSERT and its
-- commit is caught by the relay's poll (`outbox_poll_s`).
DROP TRIGGER outbox_wake ON outbox;
CREATE TRIGGER outbox_wake AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_wake();

-- migrate:down
DROP TRIGGER outbox_wake ON outbox;
CREATE CONSTRAINT TRIGGER outbox_wake AFTER INSERT ON outbox
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION outbox_wake();
