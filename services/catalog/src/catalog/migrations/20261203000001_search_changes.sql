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

-- The filter and sort indexes of therapists are no longer read by search; they stay until
-- a later release drops them (expand/contract: replicas of the previous release still
-- search with them during a rollout).

-- migrate:down
DROP TRIGGER therapists_search_change ON therapists;
DROP FUNCTION note_search_change();
DROP TABLE search_changes;
