-- migrate:up
-- Patient rights (GDPR art. 15/17/20): a person's export part, kept for them to fetch.
CREATE TABLE export_parts (
    request_id  uuid PRIMARY KEY,
    subject_id  uuid NOT NULL,
    document    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX export_parts_created ON export_parts (created_at);
-- Erasure empties what the law does not require to keep: the free text, the city and the
-- preferred times; the screening (PHQ-9 answers and total), matches and triage stay as
-- the clinical record for the retention period.
ALTER TABLE intakes ADD COLUMN erased_at timestamptz;

-- migrate:down
ALTER TABLE intakes DROP COLUMN erased_at;
DROP TABLE export_parts;
