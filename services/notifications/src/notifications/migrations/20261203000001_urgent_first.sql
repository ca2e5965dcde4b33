-- migrate:up
-- Urgent (crisis) messages and deliveries by an index of their own: the sender takes them
-- first without sorting the whole backlog behind them (store.lock_due_messages,
-- store.claim_deliveries), and the rest in due order by the existing due indexes.
CREATE INDEX messages_urgent_due ON messages (due_at)
    WHERE state = 'scheduled' AND priority = 'urgent';
CREATE INDEX deliveries_urgent_due ON deliveries (due_at, id)
    WHERE state = 'pending' AND priority = 'urgent';

-- migrate:down
DROP INDEX deliveries_urgent_due;
DROP INDEX messages_urgent_due;
