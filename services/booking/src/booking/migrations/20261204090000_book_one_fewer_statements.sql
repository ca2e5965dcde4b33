-- migrate:up

-- book_one as migration 20261204060000 made it, with fewer statements per call (each
-- statement of a PL/pgSQL function pays its own executor start, a large part of a refusal's
-- time in Postgres): everything the verdict needs before writing is read in one statement,
-- and a refusal's calendar revision and client busy times in one more; a booking that lost
-- its cells to one in flight (all it wrote rolled back) commits without waiting for the disk.
CREATE OR REPLACE FUNCTION book_one(
    p_course_id uuid, p_revision bigint, p_therapist_id uuid, p_therapist_revision bigint,
    p_availability_revision bigint, p_cells timestamptz[], p_client_id uuid, p_actor_id uuid,
    p_key text, p_request_hash text, p_response text, p_starts_at timestamptz,
    p_ends_at timestamptz, p_session_id uuid, p_number integer, p_phase text,
    p_buffer_minutes integer, p_time_zone text, p_mode text, p_meeting_url text,
    p_practice_address text, p_booked_by text, p_policy_version text, p_since timestamptz,
    p_until timestamptz, p_calendar bigint,
    p_event_id uuid, p_event_type text, p_topic text, p_event_key text, p_value bytea,
    p_headers text,
    OUT verdict text, OUT revision bigint, OUT earlier_hash text, OUT earlier_response jsonb,
    OUT calendar_revision bigint,
    OUT nearby_starts timestamptz[], OUT nearby_ends timestamptz[],
    OUT client_starts timestamptz[], OUT client_ends timestamptz[]
) LANGUAGE plpgsql AS $$
DECLARE
    lost text;
    current boolean;
    cells_taken boolean;
    client_taken boolean;
BEGIN
    -- What the verdict needs before anything is written, in one statement (each statement of
    -- a function costs its own executor start): the answer already given to the key, whether
    -- what the caller decided on still holds, a cell claimed by a committed booking (the
    -- cells are consecutive and ascending: one range of the primary key), the client's own
    -- session then.
    SELECT k.request_hash, k.response,
           EXISTS (SELECT FROM courses c WHERE c.course_id = p_course_id
                   AND c.revision = p_revision)
           AND EXISTS (SELECT FROM therapists t WHERE t.therapist_id = p_therapist_id
                       AND t.revision = p_therapist_revision)
           AND EXISTS (SELECT FROM availability a WHERE a.therapist_id = p_therapist_id
                       AND a.revision = p_availability_revision),
           cells.taken,
           NOT cells.taken  -- (AND stops at the first false: not asked when the cells are)
           AND EXISTS (SELECT FROM sessions s WHERE s.client_id = p_client_id
                       AND s.client_span && tstzrange(p_starts_at, p_ends_at)
                       AND s.status IN ('booked', 'attended', 'no_show'))
    INTO earlier_hash, earlier_response, current, cells_taken, client_taken
    FROM (SELECT EXISTS (SELECT FROM claimed_cells WHERE therapist_id = p_therapist_id
                         AND cell BETWEEN p_cells[1] AND p_cells[cardinality(p_cells)])
                 AS taken) AS cells
    LEFT JOIN idempotency_keys k ON k.actor_id = p_actor_id AND k.key = p_key;
    IF earlier_hash IS NOT NULL THEN
        verdict := 'earlier';
        RETURN;
    END IF;
    IF NOT current THEN
        verdict := 'stale';
        RETURN;
    END IF;
    IF cells_taken THEN
        verdict := 'taken';
    ELSIF client_taken THEN
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
            -- Nothing this transaction wrote survives: its commit need not wait for the WAL
            -- to reach the disk (a refused booking that lost to one in flight).
            PERFORM set_config('synchronous_commit', 'off', true);
        END;
    END IF;
    -- The therapist's calendar revision and the client's busy times in one statement, then
    -- the therapist's busy times only when the caller's kept ones are not of that revision.
    -- The revision before the therapist's busy times: a change committing between the two is
    -- read with them and only makes the revision kept older than they are (read again next
    -- time). Each calendar through its own exclusion constraint's index.
    SELECT (SELECT cal.revision FROM calendar_revisions cal
            WHERE cal.therapist_id = p_therapist_id),
           coalesce(array_agg(s.starts_at), '{}'), coalesce(array_agg(s.ends_at), '{}')
    INTO calendar_revision, client_starts, client_ends
    FROM sessions s
    WHERE s.client_id = p_client_id
      AND s.client_span && tstzrange(p_since, p_until)
      AND s.status IN ('booked', 'attended', 'no_show');
    IF calendar_revision IS NULL OR calendar_revision IS DISTINCT FROM p_calendar THEN
        SELECT coalesce(array_agg(s.starts_at), '{}'), coalesce(array_agg(s.ends_at), '{}')
        INTO nearby_starts, nearby_ends
        FROM sessions s
        WHERE s.therapist_id = p_therapist_id
          AND s.therapist_span && tstzrange(p_since, p_until)
          AND s.status IN ('booked', 'attended', 'no_show');
    END IF;
END $$;

-- migrate:down

-- book_one as migration 20261204060000 made it.
CREATE OR REPLACE FUNCTION book_one(
    p_course_id uuid, p_revision bigint, p_therapist_id uuid, p_therapist_revision bigint,
    p_availability_revision bigint, p_cells timestamptz[], p_client_id uuid, p_actor_id uuid,
    p_key text, p_request_hash text, p_response text, p_starts_at timestamptz,
    p_ends_at timestamptz, p_session_id uuid, p_number integer, p_phase text,
    p_buffer_minutes integer, p_time_zone text, p_mode text, p_meeting_url text,
    p_practice_address text, p_booked_by text, p_policy_version text, p_since timestamptz,
    p_until timestamptz, p_calendar bigint,
    p_event_id uuid, p_event_type text, p_topic text, p_event_key text, p_value bytea,
    p_headers text,
    OUT verdict text, OUT revision bigint, OUT earlier_hash text, OUT earlier_response jsonb,
    OUT calendar_revision bigint,
    OUT nearby_starts timestamptz[], OUT nearby_ends timestamptz[],
    OUT client_starts timestamptz[], OUT client_ends timestamptz[]
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
    -- The revision first, then the busy times: a change committing between the two is read
    -- with them and only makes the revision kept older than they are (read again next time).
    -- Each calendar through its own exclusion constraint's index.
    SELECT cal.revision INTO calendar_revision
    FROM calendar_revisions cal WHERE cal.therapist_id = p_therapist_id;
    IF calendar_revision IS NULL OR calendar_revision IS DISTINCT FROM p_calendar THEN
        SELECT coalesce(array_agg(s.starts_at), '{}'), coalesce(array_agg(s.ends_at), '{}')
        INTO nearby_starts, nearby_ends
        FROM sessions s
        WHERE s.therapist_id = p_therapist_id
          AND s.therapist_span && tstzrange(p_since, p_until)
          AND s.status IN ('booked', 'attended', 'no_show');
    END IF;
    SELECT coalesce(array_agg(s.starts_at), '{}'), coalesce(array_agg(s.ends_at), '{}')
    INTO client_starts, client_ends
    FROM sessions s
    WHERE s.client_id = p_client_id
      AND s.client_span && tstzrange(p_since, p_until)
      AND s.status IN ('booked', 'attended', 'no_show');
END $$;
