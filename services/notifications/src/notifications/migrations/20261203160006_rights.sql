-- migrate:up
-- A person's export or erasure request (GDPR art. 15/17/20) and each service's answer.
CREATE TABLE rights_requests (
    request_id   uuid PRIMARY KEY,
    subject_id   uuid NOT NULL,
    requester_role text NOT NULL CHECK (requester_role IN ('client', 'therapist', 'clinician')),
    kind         text NOT NULL CHECK (kind IN ('export', 'erasure')),
    status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    due_at       timestamptz NOT NULL,
    done_at      timestamptz,
    -- {"catalog": {"erased": [...], "kept": [...], "exported": [...]}, ...}
    answers      jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- A repeated request while one runs is that same request.
CREATE UNIQUE INDEX rights_requests_one_running ON rights_requests (subject_id, kind)
    WHERE status = 'running';
CREATE INDEX rights_requests_subject ON rights_requests (subject_id, requested_at DESC);

-- Who asked for erasure and when: messages planned from events that happened before it
-- (still in flight when it came) are not stored for them.
CREATE TABLE erasures (
    subject_id uuid PRIMARY KEY,
    erased_at  timestamptz NOT NULL
);

-- migrate:down
DROP TABLE erasures;
DROP TABLE rights_requests;
