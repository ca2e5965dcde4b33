-- migrate:up

-- A client has one intake in progress at a time: each intake takes a therapist's place once
-- matched, so a client (or a script) submitting again and again took place after place.
-- Submission checks the rule (matching.store.intake_in_progress); this index keeps two
-- submissions sent at once from both passing that check. An intake held to it says so
-- (`one_at_a_time`): not those stored before the rule, and never a high-risk intake (a
-- crisis always gets through, and a clinician's triage may send it on to matching).
ALTER TABLE intakes ADD COLUMN one_at_a_time boolean NOT NULL DEFAULT false;
CREATE UNIQUE INDEX intakes_one_at_a_time ON intakes (client_id)
    WHERE one_at_a_time AND status IN ('matching', 'waitlisted', 'awaiting_approval');

-- migrate:down

DROP INDEX intakes_one_at_a_time;
ALTER TABLE intakes DROP COLUMN one_at_a_time;
