-- migrate:up
-- A person's part of a data export (GDPR art. 15/20) held by this service, until the
-- person fetches it; the retention job deletes it after chassis.rights.EXPORT_KEPT_FOR.
CREATE TABLE export_parts (
    request_id  uuid PRIMARY KEY,
    subject_id  uuid NOT NULL,
    document    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX export_parts_created ON export_parts (created_at);

-- migrate:down
DROP TABLE export_parts;
