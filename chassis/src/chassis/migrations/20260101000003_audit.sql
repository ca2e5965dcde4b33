-- migrate:up
-- Every read or change of a person's health data: who, whose, what, when (docs/domain.md, Privacy).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    actor_id    text NOT NULL,
    actor_role  text NOT NULL,
    subject_id  uuid NOT NULL,
    action      text NOT NULL,
    resource    text NOT NULL,
    resource_id text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_subject ON audit_log (subject_id, at);

-- migrate:down
DROP TABLE audit_log;
