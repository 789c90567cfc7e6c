-- Releases built from source: the blob that holds the slug.

-- +goose Up
-- slug_path is the blobstore path of the release's slug (slug is its
-- digest); both are empty for releases of a plain image.
ALTER TABLE releases ADD COLUMN slug_path text NOT NULL DEFAULT '';
ALTER TABLE releases ADD CONSTRAINT releases_slug_path CHECK ((slug = '') = (slug_path = ''));

-- +goose Down
ALTER TABLE releases DROP CONSTRAINT releases_slug_path;
ALTER TABLE releases DROP COLUMN slug_path;
