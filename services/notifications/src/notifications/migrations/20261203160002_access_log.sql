-- migrate:up
-- The person's one access log across services: every service's audit entries, as their
-- AccessRecorded events carry them (ids, role, action, resource kind, reason code; no
-- health content). The stated reason of an emergency access stays in the service's audit.
CREATE TABLE access_log (
    entry_id    uuid PRIMARY KEY,
    subject_id  uuid NOT NULL,
    service     text NOT NULL,
    actor_id    text NOT NULL,
    actor_role  text NOT NULL,
    action      text NOT NULL,
    resource    text NOT NULL,
    resource_id text,
    reason_code text,
    emergency   boolean NOT NULL DEFAULT false,
    at          timestamptz NOT NULL
);
-- Newest first, paged by (at, entry_id).
CREATE INDEX access_log_subject ON access_log (subject_id, at DESC, entry_id DESC);

-- migrate:down
DROP TABLE access_log;
