-- migrate:up

-- A new intake replaces the client's intake still waiting for a therapist (matching or
-- waitlisted): the newest answers win (wider preferences, a worse PHQ-9), and an intake
-- stuck waiting never keeps its client from asking again. The replaced one stays on file
-- (a clinical record) as `replaced`, never matched.
ALTER TABLE intakes DROP CONSTRAINT intakes_status_check;
ALTER TABLE intakes ADD CONSTRAINT intakes_status_check CHECK (status IN (
    'matching', 'awaiting_triage', 'referred_elsewhere',
    'waitlisted', 'awaiting_approval', 'matched', 'replaced'));

-- migrate:down

ALTER TABLE intakes DROP CONSTRAINT intakes_status_check;
ALTER TABLE intakes ADD CONSTRAINT intakes_status_check CHECK (status IN (
    'matching', 'awaiting_triage', 'referred_elsewhere',
    'waitlisted', 'awaiting_approval', 'matched')) NOT VALID;
