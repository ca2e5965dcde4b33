-- migrate:up
-- Matching's read model of therapists, built from the catalog's and booking's events.

-- The latest profile revision (higher `version` wins; a withdrawal keeps its version
-- so an older publication delivered late cannot bring the profile back).
CREATE TABLE therapists (
    therapist_id          uuid PRIMARY KEY,
    version               int NOT NULL,
    withdrawn             boolean NOT NULL,
    profession            text,
    licensed              boolean,
    methods               text[],
    focus_areas           text[],
    languages             text[],
    modes                 text[],
    city                  text,
    age_groups            text[],
    capacity              int,
    accepting_new_clients boolean,
    time_zone             text,
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX therapists_offered ON therapists (therapist_id) WHERE NOT withdrawn;

-- The rating with the most reviews behind it wins (profile and review events both carry it).
CREATE TABLE therapist_ratings (
    therapist_id   uuid PRIMARY KEY,
    rating_average double precision NOT NULL,
    rating_count   int NOT NULL
);

-- Booking's latest summary: active courses and free slots at `computed_at`.
CREATE TABLE therapist_availability (
    therapist_id   uuid PRIMARY KEY,
    computed_at    timestamptz NOT NULL,
    active_courses int NOT NULL,
    free_slots     timestamptz[] NOT NULL
);

-- Courses booking told us about, to adjust load between availability summaries.
CREATE TABLE courses (
    course_id    uuid PRIMARY KEY,
    therapist_id uuid NOT NULL,
    match_id     uuid,
    started_at   timestamptz,
    ended_at     timestamptz
);
CREATE INDEX courses_therapist ON courses (therapist_id);
CREATE INDEX courses_match ON courses (match_id);

-- migrate:down
DROP TABLE courses;
DROP TABLE therapist_availability;
DROP TABLE therapist_ratings;
DROP TABLE therapists;
