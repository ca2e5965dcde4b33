-- migrate:up
-- Erasure empties what the law does not require to keep: the free text, the city and the
-- preferred times; the screening (PHQ-9 answers and total), matches and triage stay as
-- the clinical record for the retention period. When it happened:
ALTER TABLE intakes ADD COLUMN erased_at timestamptz;

-- migrate:down
ALTER TABLE intakes DROP COLUMN erased_at;
