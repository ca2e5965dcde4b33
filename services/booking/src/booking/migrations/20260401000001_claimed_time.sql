-- migrate:up

-- A therapist's booked time as fixed five-minute cells (the time of a session and the buffer
-- after it, the cells wholly inside). A booking claims its cells in ascending order with
-- ON CONFLICT DO NOTHING in the statement that inserts the session: the first to claim a cell
-- wins, nobody waits on a therapist-wide lock, and the ascending order keeps two claims from
-- deadlocking. The exclusion constraints on sessions stay the safety net for time that does
-- not fill a whole cell (hours at odd minutes).
CREATE TABLE claimed_cells (
    therapist_id uuid NOT NULL,
    cell         timestamptz NOT NULL,
    session_id   uuid NOT NULL,
    PRIMARY KEY (therapist_id, cell)
);
CREATE INDEX claimed_cells_session ON claimed_cells (session_id);

INSERT INTO claimed_cells (therapist_id, cell, session_id)
SELECT s.therapist_id, cell, s.session_id
FROM sessions s,
     generate_series(
         to_timestamp(ceil(extract(epoch FROM lower(s.therapist_span)) / 300) * 300),
         to_timestamp(floor(extract(epoch FROM upper(s.therapist_span)) / 300) * 300)
             - interval '5 minutes',
         interval '5 minutes') AS cell
WHERE s.status IN ('booked', 'attended', 'no_show');

-- Refuses the statement that books (see store.book): the cells were taken first, or the
-- course changed under the booking. Raising rolls back every claim the statement made.
CREATE FUNCTION refuse_booking(reason text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF reason = 'taken' THEN
        RAISE EXCEPTION 'time already claimed' USING ERRCODE = 'exclusion_violation',
            CONSTRAINT = 'claimed_cells_pkey';
    END IF;
    RAISE EXCEPTION 'the course changed meanwhile' USING ERRCODE = 'serialization_failure';
END $$;

-- Whose free-slot summary must be published again: one row per change, written with the
-- change, so nothing is lost when a worker dies; the publisher takes a therapist's rows once
-- the oldest is `summary_window_s` old and publishes one summary for all of them.
CREATE TABLE summary_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    therapist_id uuid NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX summary_requests_therapist ON summary_requests (therapist_id);

-- When the next periodic refresh of every summary is due: the replica that moves it queues
-- the refresh, all replicas share the publishing.
CREATE TABLE summary_schedule (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    next_at  timestamptz NOT NULL
);

-- migrate:down
DROP TABLE summary_schedule;
DROP TABLE summary_requests;
DROP FUNCTION refuse_booking(text);
DROP TABLE claimed_cells;
