-- The controller's first schema: apps, their config vars and releases, SSH
-- keys and API tokens. Later migrations only add (formations, deployments,
-- artifacts reference releases.id).

-- +goose Up
CREATE TABLE apps (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9-]{1,29}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE config_vars (
    app_id uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    name   text NOT NULL CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]*$'),
    value  text NOT NULL CHECK (octet_length(value) <= 32768),
    PRIMARY KEY (app_id, name)
);

-- Releases are immutable: v1..vN per app. config is the app's config vars
-- when the release was made; processes maps a process type to its command
-- and health check. image is the container image the release runs; slug is
-- the digest of its slug ('' for image-only releases).
CREATE TABLE releases (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id      uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    version     integer NOT NULL CHECK (version > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    description text NOT NULL DEFAULT '',
    image       text NOT NULL DEFAULT '',
    slug        text NOT NULL DEFAULT '',
    config      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    processes   jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(processes) = 'object'),
    UNIQUE (app_id, version)
);

-- The app's current release; NULL until the first deploy.
ALTER TABLE apps ADD COLUMN release_id uuid REFERENCES releases (id) ON DELETE SET NULL;

CREATE TABLE ssh_keys (
    fingerprint    text PRIMARY KEY,
    type           text NOT NULL,
    comment        text NOT NULL DEFAULT '',
    authorized_key text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of each token is stored.
CREATE TABLE api_tokens (
    name       text PRIMARY KEY,
    hash       bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
ALTER TABLE apps DROP COLUMN release_id;
DROP TABLE api_tokens;
DROP TABLE ssh_keys;
DROP TABLE releases;
DROP TABLE config_vars;
DROP TABLE apps;
