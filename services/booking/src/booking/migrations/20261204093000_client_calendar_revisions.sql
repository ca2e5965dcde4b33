-- migrate:up

-- A revision per client's calendar too, moved by the same trigger in the same transaction: a
-- replica keeps the client's busy times a refusal read with it, and the question whether a
-- time believed taken is free (store.check_time) leaves them out while it holds (a client
-- refused over and over in a full calendar read and sent their own sessions each time).
CREATE TABLE client_calendar_revisions (
    client_id uuid PRIMARY KEY,
    revision  bigint NOT NULL
);

CREATE OR REPLACE FUNCTION calendar_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The client's row first: the therapist's is the one concurrent bookings of them wait on
    -- (locked until the change commits), so it is taken last.
    IF TG_OP = 'DELETE' THEN
        -- No revision is no kept busy times: read each time until the next change. (A client
        -- whose data retention deletes leaves no row here either.)
        DELETE FROM client_calendar_revisions WHERE client_id = OLD.client_id;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO client_calendar_revisions (client_id, revision)
        VALUES (OLD.client_id, nextval('revisions'))
        ON CONFLICT (client_id) DO UPDATE SET revision = EXCLUDED.revision;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.client_id <> OLD.client_id) THEN
        INSERT INTO client_calendar_revisions (client_id, revision)
        VALUES (NEW.client_id, nextval('revisions'))
        ON CONFLICT (client_id) DO UPDATE SET revision = EXCLUDED.revision;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO calendar_revisions (therapist_id, revision)
        VALUES (OLD.therapist_id, nextval('revisions'))
        ON CONFLICT (therapist_id) DO UPDATE SET revision = EXCLUDED.revision;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.therapist_id <> OLD.therapist_id) THEN
        INSERT INTO calendar_revisions (therapist_id, revision)
        VALUES (NEW.therapist_id, nextval('revisions'))
        ON CONFLICT (therapist_id) DO UPDATE SET revision = EXCLUDED.revision;
    END IF;
    RETURN NULL;
END $$;

-- What changes either person's busy times.
DROP TRIGGER sessions_calendar_changed ON sessions;
CREATE TRIGGER sessions_calendar_changed AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.therapist_id IS DISTINCT FROM NEW.therapist_id
          OR OLD.client_id IS DISTINCT FROM NEW.client_id
          OR OLD.therapist_span IS DISTINCT FROM NEW.therapist_span
          OR OLD.client_span IS DISTINCT FROM NEW.client_span
          OR OLD.starts_at IS DISTINCT FROM NEW.starts_at
          OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION calendar_changed();

-- migrate:down
DROP TRIGGER sessions_calendar_changed ON sessions;
CREATE TRIGGER sessions_calendar_changed AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.therapist_id IS DISTINCT FROM NEW.therapist_id
          OR OLD.therapist_span IS DISTINCT FROM NEW.therapist_span
          OR OLD.starts_at IS DISTINCT FROM NEW.starts_at
          OR OLD.ends_at IS DISTINCT FROM NEW.ends_at
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION calendar_changed();
CREATE OR REPLACE FUNCTION calendar_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO calendar_revisions (therapist_id, revision)
        VALUES (OLD.therapist_id, nextval('revisions'))
        ON CONFLICT (therapist_id) DO UPDATE SET revision = EXCLUDED.revision;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.therapist_id <> OLD.therapist_id) THEN
        INSERT INTO calendar_revisions (therapist_id, revision)
        VALUES (NEW.therapist_id, nextval('revisions'))
        ON CONFLICT (therapist_id) DO UPDATE SET revision = EXCLUDED.revision;
    END IF;
    RETURN NULL;
END $$;
DROP TABLE client_calendar_revisions;
