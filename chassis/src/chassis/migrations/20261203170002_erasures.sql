-- migrate:up
-- Who asked for erasure here and when (chassis.rights.record_erasure): an event about the
-- person that happened before it, still in flight when it came, brings nothing back.
-- (Notifications made this table first in its own migrations, in the same shape.)
CREATE TABLE IF NOT EXISTS erasures (
    subject_id uuid PRIMARY KEY,
    erased_at  timestamptz NOT NULL
);

-- migrate:down
-- Notifications' own migration drops it (its rights migration) when it goes down further.
SELECT 1;
