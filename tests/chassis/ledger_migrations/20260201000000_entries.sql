-- migrate:up
CREATE TABLE entries (
    event_id     uuid PRIMARY KEY,
    therapist_id uuid NOT NULL,
    rating       int NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE submissions (
    review_id    uuid PRIMARY KEY,
    therapist_id uuid NOT NULL,
    rating       int NOT NULL
);

-- migrate:down
DROP TABLE entries;
DROP TABLE submissions;
