-- migrate:up
-- A person's own contact details and channel preferences (docs/domain.md, Privacy: they belong
-- here and nowhere else). Validated by domain.contacts before they are written.
CREATE TABLE contacts (
    person_id     uuid PRIMARY KEY,
    email         text,
    phone         text,
    language      text NOT NULL DEFAULT 'sv' CHECK (language IN ('sv', 'en')),
    time_zone     text NOT NULL DEFAULT 'Europe/Stockholm',
    email_enabled boolean NOT NULL DEFAULT true,
    sms_enabled   boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- migrate:down
DROP TABLE contacts;
