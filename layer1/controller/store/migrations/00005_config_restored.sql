-- A deployment that rolled back may have undone the config change that
-- made its release.

-- +goose Up
-- config_restored: the app's config vars were set back to the old
-- release's when the deployment rolled back.
ALTER TABLE deployments ADD COLUMN config_restored boolean NOT NULL DEFAULT false;

-- +goose Down
ALTER TABLE deployments DROP COLUMN config_restored;
