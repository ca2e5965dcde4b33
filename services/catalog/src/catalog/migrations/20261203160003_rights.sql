-- migrate:up
-- Patient rights (GDPR art. 15/17/20): a person's export part, kept for them to fetch.
CREATE TABLE export_parts (
    request_id  uuid PRIMARY KEY,
    subject_id  uuid NOT NULL,
    document    jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX export_parts_created ON export_parts (created_at);
CREATE INDEX reviews_client ON reviews (client_id);
CREATE INDEX review_rights_client ON review_rights (client_id);

-- migrate:down
DROP INDEX review_rights_client;
DROP INDEX reviews_client;
DROP TABLE export_parts;
