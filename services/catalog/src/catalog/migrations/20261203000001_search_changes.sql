-- migrate:up
-- Search is served from each api replica's memory (domain.search_index). A replica reads
-- the whole published catalog once, then before every search only the profiles changed
-- since: this table names, per therapist, the transaction that last changed the profile.
-- A replica remembers the oldest transaction still running when it last read (its
-- snapshot's xmin) and next reads every change made by that transaction or a later one,
-- so a change committed out of order is never missed (store.search_changes).
CREATE TABLE search_changes (
    therapist_id  uuid PRIMARY KEY,
    changed_by    xid8 NOT NULL
);
CREATE INDEX search_changes_by_transaction ON search_changes (changed_by);

CREATE FUNCTION note_search_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A trigger, so that no write to a profile (edit, status, rating, erasure) is missed.
    INSERT INTO search_changes (therapist_id, changed_by)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.therapist_id ELSE NEW.therapist_id END,
            pg_current_xact_id())
    ON CONFLICT (therapist_id) DO UPDATE SET changed_by = EXCLUDED.changed_by;
    RETURN NULL;
END
$$;
CREATE TRIGGER therapists_search_change AFTER INSERT OR UPDATE OR DELETE ON therapists
    FOR EACH ROW EXECUTE FUNCTION note_search_change();

-- No query filters or sorts therapists in the database any more.
DROP INDEX therapists_methods, therapists_focus_areas, therapists_languages, therapists_modes,
    therapists_age_groups, therapists_city, therapists_by_rating, therapists_by_name;

-- migrate:down
CREATE INDEX therapists_methods ON therapists USING gin (methods) WHERE status = 'published';
CREATE INDEX therapists_focus_areas ON therapists USING gin (focus_areas)
    WHERE status = 'published';
CREATE INDEX therapists_languages ON therapists USING gin (languages)
    WHERE status = 'published';
CREATE INDEX therapists_modes ON therapists USING gin (modes) WHERE status = 'published';
CREATE INDEX therapists_age_groups ON therapists USING gin (age_groups)
    WHERE status = 'published';
CREATE INDEX therapists_city ON therapists (lower(city)) WHERE status = 'published';
CREATE INDEX therapists_by_rating ON therapists
    (rating_average DESC NULLS LAST, (lower(name) COLLATE "C"), therapist_id)
    WHERE status = 'published';
CREATE INDEX therapists_by_name ON therapists ((lower(name) COLLATE "C"), therapist_id)
    WHERE status = 'published';
DROP TRIGGER therapists_search_change ON therapists;
DROP FUNCTION note_search_change();
DROP TABLE search_changes;
