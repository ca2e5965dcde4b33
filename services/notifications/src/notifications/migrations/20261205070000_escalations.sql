-- migrate:up

-- Escalated intakes until their triage: every minute the on-call watch alerts the clinicians
-- on call now who were not alerted yet (a shift that began after the escalation), by planning
-- the escalation again (each clinician's alert is one message: its dedup key). IntakeTriaged
-- closes it and drops the event (a severity band); it travels on another topic and may come
-- first (the row then keeps the escalation from opening). Rows go after 30 days.
CREATE TABLE escalations (
    intake_id    uuid PRIMARY KEY,
    envelope     jsonb,        -- the IntakeEscalated event as it came; NULL once triaged
    escalated_at timestamptz,
    triaged_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escalations_awaiting_triage ON escalations (escalated_at)
    WHERE triaged_at IS NULL AND envelope IS NOT NULL;

-- migrate:down

DROP TABLE escalations;
