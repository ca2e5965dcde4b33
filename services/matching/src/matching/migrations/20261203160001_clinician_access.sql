-- migrate:up
-- Who is working on an intake that needs a clinician (domain/access.py): one at a time.
CREATE TABLE intake_claims (
    intake_id    uuid PRIMARY KEY REFERENCES intakes,
    clinician_id uuid NOT NULL,
    claimed_at   timestamptz NOT NULL DEFAULT now()
);

-- Emergency access: a clinician without standing access opened an intake with a stated
-- reason; it lasts until `expires_at`. The reason is also in the audit log entry.
CREATE TABLE emergency_access (
    intake_id    uuid NOT NULL REFERENCES intakes,
    clinician_id uuid NOT NULL,
    reason       text NOT NULL,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (intake_id, clinician_id, granted_at)
);

-- migrate:down
DROP TABLE emergency_access;
DROP TABLE intake_claims;
