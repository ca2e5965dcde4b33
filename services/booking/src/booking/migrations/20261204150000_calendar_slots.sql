-- migrate:up

-- A therapist's calendar revision without one row that every change of their sessions locks
-- until it commits. Before, the trigger moved the therapist's one row of calendar_revisions:
-- each booking held it from its session's insert to its commit, so the bookings of one
-- therapist committed one after another, waiting for each other's WAL flush (a critical
-- section per therapist on the booking path). Now a change moves one of sixteen slots, the
-- one of its session, and the revision is the sum of the slots' revisions. A slot's revision
-- is taken under its row's lock (ON CONFLICT ... DO UPDATE evaluates it once the row is
-- locked), so each slot only grows, in the order its changes commit, and every committed
-- change makes the sum larger: a revision kept still tells every later change apart, and
-- the readers (book_one, the questions of store.claims) read `calendar_revisions` as before.
-- Two bookings of one therapist wait for each other only when their sessions share a slot.
ALTER TABLE calendar_revisions RENAME TO calendar_slots;
ALTER TABLE calendar_slots ADD COLUMN slot smallint NOT NULL DEFAULT 0;
ALTER TABLE calendar_slots DROP CONSTRAINT calendar_revisions_pkey;
ALTER TABLE calendar_slots ADD PRIMARY KEY (therapist_id, slot);
ALTER TABLE calendar_slots ALTER COLUMN slot DROP DEFAULT;

CREATE VIEW calendar_revisions AS
    SELECT therapist_id, sum(revision)::bigint AS revision
    FROM calendar_slots
    GROUP BY therapist_id;

CREATE OR REPLACE FUNCTION calendar_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO calendar_slots (therapist_id, slot, revision)
        VALUES (OLD.therapist_id, get_byte(uuid_send(OLD.session_id), 15) % 16,
                nextval('revisions'))
        ON CONFLICT (therapist_id, slot) DO UPDATE SET revision = nextval('revisions');
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.therapist_id <> OLD.therapist_id) THEN
        INSERT INTO calendar_slots (therapist_id, slot, revision)
        VALUES (NEW.therapist_id, get_byte(uuid_send(NEW.session_id), 15) % 16,
                nextval('revisions'))
        ON CONFLICT (therapist_id, slot) DO UPDATE SET revision = nextval('revisions');
    END IF;
    RETURN NULL;
END $$;

-- migrate:down

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

DROP VIEW calendar_revisions;
-- One row per therapist again, each at a revision no replica kept (a new one): the busy
-- times kept with the slots' sums are read again.
DELETE FROM calendar_slots WHERE slot <> 0;
UPDATE calendar_slots SET revision = nextval('revisions');
ALTER TABLE calendar_slots DROP CONSTRAINT calendar_slots_pkey;
ALTER TABLE calendar_slots DROP COLUMN slot;
ALTER TABLE calendar_slots RENAME TO calendar_revisions;
ALTER TABLE calendar_revisions ADD PRIMARY KEY (therapist_id);
