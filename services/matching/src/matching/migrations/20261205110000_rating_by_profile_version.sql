-- migrate:up

-- A rating can go down: an erased or hidden review is taken out, and catalog announces the
-- profile again (a new version) with the rating without it. "The rating with the most
-- reviews behind it wins" kept the old one for good. Now the rating a profile revision
-- carries is the rating (`profile_version`: the revision it came from; an average of NULL
-- when none is left), and a ReviewPublished, which carries no version, only counts until
-- a profile has spoken of ratings (catalog announces the profile after every review).
ALTER TABLE therapist_ratings ADD COLUMN profile_version int;
ALTER TABLE therapist_ratings ALTER COLUMN rating_average DROP NOT NULL;

-- migrate:down

DELETE FROM therapist_ratings WHERE rating_average IS NULL;
ALTER TABLE therapist_ratings ALTER COLUMN rating_average SET NOT NULL;
ALTER TABLE therapist_ratings DROP COLUMN profile_version;
