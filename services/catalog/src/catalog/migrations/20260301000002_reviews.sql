-- migrate:up
-- A completed course (from CourseCompleted): its client may review its therapist, once.
CREATE TABLE review_rights (
    course_id    uuid PRIMARY KEY,
    client_id    uuid NOT NULL,
    therapist_id uuid NOT NULL,
    completed_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Verified reviews. The reviewer is kept for the rules, never shown.
CREATE TABLE reviews (
    review_id    uuid PRIMARY KEY,
    course_id    uuid NOT NULL UNIQUE REFERENCES review_rights (course_id),
    client_id    uuid NOT NULL,
    therapist_id uuid NOT NULL,
    rating       smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    text         text NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    hidden       boolean NOT NULL DEFAULT false,
    hidden_by    uuid,
    hidden_at    timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- A profile shows its latest visible reviews; the aggregate reads all visible ratings.
CREATE INDEX reviews_visible ON reviews (therapist_id, created_at DESC) WHERE NOT hidden;

-- migrate:down
DROP TABLE reviews;
DROP TABLE review_rights;
