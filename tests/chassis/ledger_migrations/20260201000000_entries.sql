-- migrate:up
CREATE TABLE entries (
    event_id     uuid PRIMARY KEY,
    therapist_id uuid NOT NULL,
    rating       int NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE availability_seen (
    event_id     uuid PRIMARY KEY,
    therapist_id uuid NOT NULL
);
CREATE TABLE submissions (
    review_id    uuid PRIMARY KEY,
    therapist_id uuid NOT NULL,
    rating       int NOT NULL
);

-- migrate:down
DROP TABLE entries;
DROP TABLE submissions;
DROP TABLE availability_seen;
