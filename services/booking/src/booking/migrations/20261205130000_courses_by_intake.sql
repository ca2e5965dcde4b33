-- migrate:up

-- A course opened for a match is superseded by a later match's course of the same intake
-- whatever that course's status (ended or completed meanwhile): all of an intake's
-- courses are read, not only the active ones.
DROP INDEX courses_intake_active;
CREATE INDEX courses_intake ON courses (intake_id);

-- migrate:down

DROP INDEX courses_intake;
CREATE INDEX courses_intake_active ON courses (intake_id) WHERE status = 'active';
