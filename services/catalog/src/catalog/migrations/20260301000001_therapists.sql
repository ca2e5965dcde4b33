-- migrate:up
-- Therapist profiles (domain.profile.TherapistProfile), their status and rating aggregate.
CREATE TABLE therapists (
    therapist_id          uuid PRIMARY KEY,  -- the therapist's person id
    status                text NOT NULL DEFAULT 'draft'
                          CHECK (status IN ('draft', 'published', 'withdrawn')),
    name                  text NOT NULL,
    profession            text NOT NULL,
    licence_number        text,
    certifications        text[] NOT NULL DEFAULT '{}',
    methods               text[] NOT NULL,
    age_groups            text[] NOT NULL,
    focus_areas           text[] NOT NULL DEFAULT '{}',
    languages             text[] NOT NULL,
    modes                 text[] NOT NULL,
    city                  text,
    practice_address      text,
    bio                   text NOT NULL DEFAULT '',
    capacity              integer NOT NULL,
    accepting_new_clients boolean NOT NULL,
    time_zone             text NOT NULL,
    -- Over visible reviews only (domain.reviews.rating_summary).
    rating_average        numeric(3, 2),
    rating_count          integer NOT NULL DEFAULT 0,
    -- Revision of the last TherapistProfilePublished/-Withdrawn event (0: none yet); one
    -- counter for both topics, so a consumer of both keeps the higher version.
    version               integer NOT NULL DEFAULT 0,
    withdrawn_reason      text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Public browse and search read published profiles only, so every index is partial.
-- Array filters use `@>`, which GIN serves; the planner combines several in a bitmap.
CREATE INDEX therapists_methods ON therapists USING gin (methods) WHERE status = 'published';
CREATE INDEX therapists_focus_areas ON therapists USING gin (focus_areas)
    WHERE status = 'published';
CREATE INDEX therapists_languages ON therapists USING gin (languages)
    WHERE status = 'published';
CREATE INDEX therapists_modes ON therapists USING gin (modes) WHERE status = 'published';
CREATE INDEX therapists_age_groups ON therapists USING gin (age_groups)
    WHERE status = 'published';
CREATE INDEX therapists_city ON therapists (lower(city)) WHERE status = 'published';
-- The two sort orders (store.SORT_ORDERS), so a page is read in order without a sort.
CREATE INDEX therapists_by_rating ON therapists
    (rating_average DESC NULLS LAST, (lower(name) COLLATE "C"), therapist_id)
    WHERE status = 'published';
CREATE INDEX therapists_by_name ON therapists ((lower(name) COLLATE "C"), therapist_id)
    WHERE status = 'published';

-- migrate:down
DROP TABLE therapists;
