-- migrate:up
-- Patient rights (GDPR art. 15/17/20): a person's export part, kept for them to fetch.
CREATE TABLE export_parts (
    request_id  uuid PRIMARY KEY,
    subject_id  uuid NOT NULL,
    document    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX export_parts_created ON export_parts (created_at);

-- migrate:down
DROP TABLE export_parts;
