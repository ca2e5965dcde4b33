-- migrate:up
-- An intake as the client submitted it (health data: every PHQ-9 answer and the free text),
-- its screening, and where it stands.
CREATE TABLE intakes (
    intake_id              uuid PRIMARY KEY,
    client_id              uuid NOT NULL,
    submitted_at           timestamptz NOT NULL DEFAULT now(),
    age                    int NOT NULL,
    languages              text[] NOT NULL,
    preferred_mode         text NOT NULL,
    city                   text,
    problem_areas          text[] NOT NULL,
    phq9                   smallint[] NOT NULL CHECK (cardinality(phq9) = 9),
    free_text              text,
    time_windows           jsonb NOT NULL DEFAULT '[]'::jsonb,
    direct_therapist_id    uuid,
    -- Nothing is stored without both consents.
    consent_to_treatment   boolean NOT NULL CHECK (consent_to_treatment),
    consent_to_health_data boolean NOT NULL CHECK (consent_to_health_data),
    phq9_total             int NOT NULL CHECK (phq9_total BETWEEN 0 AND 27),
    severity_band          text NOT NULL,
    risk_level             text NOT NULL CHECK (risk_level IN ('standard', 'high')),
    requires_approval      boolean NOT NULL,
    method                 text NOT NULL,
    age_group              text NOT NULL,
    status                 text NOT NULL CHECK (status IN (
        'matching', 'awaiting_triage', 'referred_elsewhere',
        'waitlisted', 'awaiting_approval', 'matched')),
    -- When the intake entered its current status: the clinician queue's order.
    status_since           timestamptz NOT NULL DEFAULT now(),
    waitlisted_at          timestamptz,
    waitlist_reasons       text[] NOT NULL DEFAULT '{}',
    triaged_by             uuid,
    triage_decision        text,
    triaged_at             timestamptz
);
CREATE INDEX intakes_client ON intakes (client_id, submitted_at);
CREATE INDEX intakes_waitlist ON intakes (waitlisted_at, intake_id) WHERE status = 'waitlisted';
CREATE INDEX intakes_clinician_queue ON intakes (status_since, intake_id)
    WHERE status IN ('awaiting_triage', 'awaiting_approval');

-- Every match proposed for an intake; at most one is current (proposed or active).
CREATE TABLE matches (
    match_id              uuid PRIMARY KEY,
    intake_id             uuid NOT NULL REFERENCES intakes,
    client_id             uuid NOT NULL,
    therapist_id          uuid NOT NULL,
    score                 double precision NOT NULL,
    mode                  text NOT NULL,
    reasons               jsonb NOT NULL,
    relaxed               text[] NOT NULL,
    choice_refused        text[] NOT NULL,
    alternatives          jsonb NOT NULL,
    requires_approval     boolean NOT NULL,
    previous_therapist_id uuid,
    -- proposed: awaits a clinician; active: in force; rejected / switched: history.
    status                text NOT NULL CHECK (status IN ('proposed', 'active', 'rejected', 'switched')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    decided_by            uuid,
    decided_at            timestamptz
);
-- An IntakeSubmitted delivered twice can never give two current matches.
CREATE UNIQUE INDEX matches_one_current ON matches (intake_id) WHERE status IN ('proposed', 'active');
CREATE INDEX matches_current_by_therapist ON matches (therapist_id)
    WHERE status IN ('proposed', 'active');
CREATE INDEX matches_intake ON matches (intake_id, created_at);

-- migrate:down
DROP TABLE matches;
DROP TABLE intakes;
