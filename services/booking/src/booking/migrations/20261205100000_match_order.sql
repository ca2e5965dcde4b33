-- migrate:up

-- The order an intake's matches arrived in (one topic, keyed by the intake: the order
-- matching decided them). A course opened for a match ends the intake's courses of earlier
-- matches (a switch of therapist, also one whose first proposal a clinician rejected: the
-- match that followed names no previous therapist), and an approval arriving after a later
-- match already has its course opens nothing. Rows from before: no order, the earliest.
CREATE SEQUENCE match_order;
ALTER TABLE matches ADD COLUMN matched_order bigint;
CREATE INDEX courses_intake_active ON courses (intake_id) WHERE status = 'active';

-- migrate:down

DROP INDEX courses_intake_active;
ALTER TABLE matches DROP COLUMN matched_order;
DROP SEQUENCE match_order;
