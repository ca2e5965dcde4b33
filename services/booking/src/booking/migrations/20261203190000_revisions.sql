-- migrate:up

-- A revision on each row a booking decides on (the course, the therapist, their hours), so a
-- replica may keep them in memory between bookings: the statement that books checks the
-- revisions it decided on and refuses as stale when any moved. Revisions come from one
-- sequence, so a row deleted and made again never repeats an old revision. Any UPDATE that
-- does not set the revision itself gets a new one (the trigger); a change of a course's
-- sessions locks the course by bumping it (store.lock_course).
CREATE SEQUENCE revisions;

ALTER TABLE courses ADD COLUMN revision bigint NOT NULL DEFAULT 0;
ALTER TABLE courses ALTER COLUMN revision SET DEFAULT nextval('revisions');
ALTER TABLE therapists ADD COLUMN revision bigint NOT NULL DEFAULT 0;
ALTER TABLE therapists ALTER COLUMN revision SET DEFAULT nextval('revisions');
ALTER TABLE availability ADD COLUMN revision bigint NOT NULL DEFAULT 0;
ALTER TABLE availability ALTER COLUMN revision SET DEFAULT nextval('revisions');

CREATE FUNCTION next_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('revisions');
    RETURN NEW;
END $$;

CREATE TRIGGER courses_revision BEFORE UPDATE ON courses FOR EACH ROW
    WHEN (OLD.revision = NEW.revision) EXECUTE FUNCTION next_revision();
CREATE TRIGGER therapists_revision BEFORE UPDATE ON therapists FOR EACH ROW
    WHEN (OLD.revision = NEW.revision) EXECUTE FUNCTION next_revision();
CREATE TRIGGER availability_revision BEFORE UPDATE ON availability FOR EACH ROW
    WHEN (OLD.revision = NEW.revision) EXECUTE FUNCTION next_revision();

-- Books one session if what the booking was decided on still holds (store.book_one): the
-- revisions it read, no answer given to the key yet, the time free. Without a session
-- (p_session_id NULL: store.check_time) it only says whether the time is free ('free'). The
-- session's event goes into the outbox as chassis.outbox writes events (its columns).
-- Refusals return at once, before anything is locked or written, with both calendars' busy
-- times within p_near of the start (for the alternatives the refusal offers). The writes run
-- in a block that a cell claimed meanwhile by another booking stops at the first such cell (a
-- plain INSERT: unique_violation once that booking committed); the block's writes go back and
-- the refusal comes back as a row like any 'taken', with the busy times near it (the winner's
-- session among them).
CREATE FUNCTION book_one(
    p_course_id uuid, p_revision bigint, p_therapist_id uuid, p_therapist_revision bigint,
    p_availability_revision bigint, p_cells timestamptz[], p_client_id uuid, p_actor_id uuid,
    p_key text, p_request_hash text, p_response text, p_starts_at timestamptz,
    p_ends_at timestamptz, p_session_id uuid, p_number integer, p_phase text,
    p_buffer_minutes integer, p_time_zone text, p_mode text, p_meeting_url text,
    p_practice_address text, p_booked_by text, p_policy_version text, p_near interval,
    p_event_id uuid, p_event_type text, p_topic text, p_event_key text, p_value bytea,
    p_headers text,
    OUT verdict text, OUT revision bigint, OUT earlier_hash text, OUT earlier_response jsonb,
    OUT nearby_starts timestamptz[], OUT nearby_ends timestamptz[]
) LANGUAGE plpgsql AS $$
DECLARE
    lost text;
BEGIN
    SELECT k.request_hash, k.response INTO earlier_hash, earlier_response
    FROM idempotency_keys k WHERE k.actor_id = p_actor_id AND k.key = p_key;
    IF FOUND THEN
        verdict := 'earlier';
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT FROM courses c WHERE c.course_id = p_course_id
                   AND c.revision = p_revision)
       OR NOT EXISTS (SELECT FROM therapists t WHERE t.therapist_id = p_therapist_id
                      AND t.revision = p_therapist_revision)
       OR NOT EXISTS (SELECT FROM availability a WHERE a.therapist_id = p_therapist_id
                      AND a.revision = p_availability_revision) THEN
        verdict := 'stale';
        RETURN;
    END IF;
    -- A cell claimed by a committed booking, or the client's own session then. (The cells
    -- are consecutive and ascending: one range of the primary key.)
    IF EXISTS (SELECT FROM claimed_cells WHERE therapist_id = p_therapist_id
               AND cell BETWEEN p_cells[1] AND p_cells[cardinality(p_cells)]) THEN
        verdict := 'taken';
    ELSIF EXISTS (SELECT FROM sessions s WHERE s.client_id = p_client_id
                  AND s.client_span && tstzrange(p_starts_at, p_ends_at)
                  AND s.status IN ('booked', 'attended', 'no_show')) THEN
        verdict := 'client_busy';
    END IF;
    IF verdict IS NULL AND p_session_id IS NULL THEN  -- only asked whether the time is free
        verdict := 'free';
        RETURN;
    END IF;
    IF verdict IS NULL THEN
        BEGIN
            -- Locks the course and gives it a new revision: cached views of it are stale now.
            UPDATE courses c SET revision = nextval('revisions')
            WHERE c.course_id = p_course_id AND c.revision = p_revision
            RETURNING c.revision INTO book_one.revision;
            IF NOT FOUND THEN  -- changed since the check: nothing written
                verdict := 'stale';
                RETURN;
            END IF;
            -- The first cell another booking claimed meanwhile stops here (unique_violation,
            -- once that booking committed), and all this block wrote goes back.
            INSERT INTO claimed_cells (therapist_id, cell, session_id)
            SELECT p_therapist_id, cell, p_session_id FROM unnest(p_cells) AS cell ORDER BY cell;
            INSERT INTO sessions (session_id, course_id, client_id, therapist_id, number, phase,
                status, starts_at, ends_at, client_span, therapist_span, buffer_minutes,
                time_zone, mode, meeting_url, practice_address, booked_by, policy_version)
            VALUES (p_session_id, p_course_id, p_client_id, p_therapist_id, p_number, p_phase,
                'booked', p_starts_at, p_ends_at, tstzrange(p_starts_at, p_ends_at),
                tstzrange(p_starts_at, p_ends_at + make_interval(mins => p_buffer_minutes)),
                p_buffer_minutes, p_time_zone, p_mode, p_meeting_url, p_practice_address,
                p_booked_by, p_policy_version);
            INSERT INTO idempotency_keys (actor_id, key, request_hash, response)
            VALUES (p_actor_id, p_key, p_request_hash, p_response::jsonb);
            INSERT INTO outbox (event_id, event_type, topic, key, value, headers)
            VALUES (p_event_id, p_event_type, p_topic, p_event_key, p_value, p_headers::jsonb);
            INSERT INTO summary_requests (therapist_id) VALUES (p_therapist_id);
            verdict := 'booked';
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            GET STACKED DIAGNOSTICS lost = CONSTRAINT_NAME;
            IF lost IS DISTINCT FROM 'claimed_cells_pkey' THEN
                RAISE;  -- the key, or the place in the plan, taken meanwhile: the caller's
            END IF;
            verdict := 'taken';
            revision := NULL;
        END;
    END IF;
    -- Each calendar through its own exclusion constraint's index.
    SELECT coalesce(array_agg(busy.starts_at), '{}'), coalesce(array_agg(busy.ends_at), '{}')
    INTO nearby_starts, nearby_ends
    FROM (SELECT s.starts_at, s.ends_at FROM sessions s
          WHERE s.therapist_id = p_therapist_id
            AND s.therapist_span && tstzrange(p_starts_at - p_near, p_starts_at + p_near)
            AND s.status IN ('booked', 'attended', 'no_show')
          UNION ALL
          SELECT s.starts_at, s.ends_at FROM sessions s
          WHERE s.client_id = p_client_id
            AND s.client_span && tstzrange(p_starts_at - p_near, p_starts_at + p_near)
            AND s.status IN ('booked', 'attended', 'no_show')) AS busy;
END $$;

-- migrate:down
DROP FUNCTION book_one(uuid, bigint, uuid, bigint, bigint, timestamptz[], uuid, uuid, text,
    text, text, timestamptz, timestamptz, uuid, integer, text, integer, text, text, text, text,
    text, text, interval, uuid, text, text, text, bytea, text);
DROP TRIGGER availability_revision ON availability;
DROP TRIGGER therapists_revision ON therapists;
DROP TRIGGER courses_revision ON courses;
DROP FUNCTION next_revision();
ALTER TABLE availability DROP COLUMN revision;
ALTER TABLE therapists DROP COLUMN revision;
ALTER TABLE courses DROP COLUMN revision;
DROP SEQUENCE revisions;
