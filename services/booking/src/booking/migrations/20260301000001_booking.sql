-- migrate:up

-- The therapist as booking sees it: a read model of catalog's profile events (higher
-- `version` wins) and, with its row lock, the point where bookings of one therapist queue up.
CREATE TABLE therapists (
    therapist_id     uuid PRIMARY KEY,
    time_zone        text NOT NULL DEFAULT 'Europe/Stockholm',
    modes            text[] NOT NULL DEFAULT '{}',
    city             text,
    practice_address text,
    published        boolean NOT NULL DEFAULT false,
    -- 0: not heard from catalog yet (the row exists for its lock or its availability).
    version          integer NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Working hours in the therapist's wall time (domain/availability.py).
CREATE TABLE availability (
    therapist_id     uuid PRIMARY KEY REFERENCES therapists,
    weekly           jsonb NOT NULL,          -- {"0": ["09:00-12:00", ...]}, 0 = Monday
    exceptions       jsonb NOT NULL,          -- [{"date": "2026-12-24", "hours": []}]
    buffer_minutes   integer NOT NULL,
    min_notice_hours integer NOT NULL,
    horizon_days     integer NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- What matching proposed; a match that needs a clinician's approval waits here for it.
-- The two events may arrive in either order: the course opens when both facts are in.
CREATE TABLE matches (
    match_id          uuid PRIMARY KEY,
    details           jsonb,                  -- the TherapistMatched payload
    requires_approval boolean,
    approved_at       timestamptz,
    received_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE courses (
    course_id           uuid PRIMARY KEY,
    match_id            uuid NOT NULL UNIQUE, -- one course per match, however often it arrives
    intake_id           uuid NOT NULL,
    client_id           uuid NOT NULL,
    therapist_id        uuid NOT NULL REFERENCES therapists,
    method              text NOT NULL,
    planned_sessions    integer NOT NULL,
    session_minutes     integer NOT NULL,
    problem_areas       text[] NOT NULL,
    mode                text NOT NULL CHECK (mode IN ('video', 'in_person')),
    start_severity_band text NOT NULL,
    status              text NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'completed', 'ended_early')),
    end_reason          text,
    ended_by            text,
    outcome             text CHECK (outcome IN ('response', 'remission', 'neither')),
    final_severity_band text,
    started_at          timestamptz NOT NULL DEFAULT now(),
    closed_at           timestamptz
);
CREATE INDEX courses_client ON courses (client_id, status);
CREATE INDEX courses_therapist ON courses (therapist_id, status);

CREATE TABLE sessions (
    session_id       uuid PRIMARY KEY,
    course_id        uuid NOT NULL REFERENCES courses,
    client_id        uuid NOT NULL,
    therapist_id     uuid NOT NULL,
    number           integer NOT NULL CHECK (number >= 1),
    phase            text NOT NULL CHECK (phase IN ('initial', 'middle', 'concluding')),
    status           text NOT NULL DEFAULT 'booked'
                     CHECK (status IN ('booked', 'cancelled', 'late_cancelled', 'attended',
                                       'no_show')),
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    -- The client's time, and the therapist's time including the buffer after the session:
    -- two therapist spans that do not overlap leave at least the buffer between sessions.
    client_span      tstzrange NOT NULL,
    therapist_span   tstzrange NOT NULL,
    buffer_minutes   integer NOT NULL,
    time_zone        text NOT NULL,
    mode             text NOT NULL CHECK (mode IN ('video', 'in_person')),
    meeting_url      text,
    practice_address text,
    booked_by        text NOT NULL,
    series_id        uuid,
    policy_version   text NOT NULL,           -- the change policy this booking was made under
    phq9_total       integer CHECK (phq9_total BETWEEN 0 AND 27),
    changed_by       text,
    late             boolean,
    counts_as_used   boolean,
    booked_at        timestamptz NOT NULL DEFAULT now(),
    changed_at       timestamptz,
    CHECK (ends_at > starts_at),
    CHECK (client_span = tstzrange(starts_at, ends_at)),
    CHECK (lower(therapist_span) = starts_at AND upper(therapist_span) >= ends_at),
    -- Overlap is impossible here, not only in the application (docs/domain.md, Booking).
    CONSTRAINT therapist_free EXCLUDE USING gist (therapist_id WITH =, therapist_span WITH &&)
        WHERE (status IN ('booked', 'attended', 'no_show')),
    CONSTRAINT client_free EXCLUDE USING gist (client_id WITH =, client_span WITH &&)
        WHERE (status IN ('booked', 'attended', 'no_show'))
);
-- A place in the plan is held once (domain/course.py: a missed concluding session's number
-- may come again, on its make-up).
CREATE UNIQUE INDEX sessions_one_live_number ON sessions (course_id, number)
    WHERE status IN ('booked', 'attended');
CREATE INDEX sessions_course ON sessions (course_id, starts_at);

-- Booking requests carry a key so a retried request books once: key -> the answer given.
CREATE TABLE idempotency_keys (
    actor_id     uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    response     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, key)
);

-- migrate:down
DROP TABLE idempotency_keys;
DROP TABLE sessions;
DROP TABLE courses;
DROP TABLE matches;
DROP TABLE availability;
DROP TABLE therapists;
