-- migrate:up
-- Why an entry was made when the reader had no standing access (a clinician's emergency
-- access): a code for the client's access log everywhere, the stated reason kept here.
ALTER TABLE audit_log
    ADD COLUMN reason_code text,
    ADD COLUMN reason      text,
    ADD COLUMN emergency   boolean NOT NULL DEFAULT false;

-- migrate:down
ALTER TABLE audit_log DROP COLUMN reason_code, DROP COLUMN reason, DROP COLUMN emergency;
