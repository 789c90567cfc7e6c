-- An app's build cache lives on the host that built it last: the next
-- build prefers that host.

-- +goose Up
-- build_host: the ID of the host whose build job of the app last
-- succeeded (its build-cache volume is warm); '' before the first one.
ALTER TABLE apps ADD COLUMN build_host text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE apps DROP COLUMN build_host;
