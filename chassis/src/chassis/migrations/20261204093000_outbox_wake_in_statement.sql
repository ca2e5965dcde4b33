-- migrate:up
-- The INSERT that writes outbox rows now wakes a sleeping relay itself (chassis.outbox:
-- `events_insert`, `event_insert`): it reads `outbox_relay.sleeping` in the same plan and
-- NOTIFYs only when it is set. The statement trigger ran a PL/pgSQL function and its query
-- on every write, busy relay or not: about a sixth of the outbox row's server CPU per
-- write on the 2-core bench. Every outbox write goes through those two statements.
DROP TRIGGER outbox_wake ON outbox;

-- migrate:down
CREATE TRIGGER outbox_wake AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_wake();
