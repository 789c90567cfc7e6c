-- Running apps: formations (desired job counts per release and process
-- type), deployments (moves from one release to the next) and routes.

-- +goose Up
-- The desired number of jobs of one process type of one release. An app has
-- rows for its current release and, while a deployment runs, for the
-- release it deploys; the etcd key formations/<app>/<release>/<type>
-- mirrors each row whose count is above 0.
CREATE TABLE formations (
    app_id       uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    release_id   uuid NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    type         text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_-]{0,29}$'),
    count        integer NOT NULL CHECK (count >= 0),
    -- A rolling restart replaces the jobs created before restarted_at.
    restarted_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (release_id, type)
);
CREATE INDEX formations_app_id ON formations (app_id);

-- A deployment moves an app from old_release_id (NULL for none) to
-- new_release_id. status: running until the new release's jobs are up
-- (complete) or the deadline passes (failed, reason in error), or a newer
-- deployment replaces it (superseded). An app has one running deployment
-- at most.
CREATE TABLE deployments (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id         uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    old_release_id uuid REFERENCES releases (id) ON DELETE SET NULL,
    new_release_id uuid NOT NULL REFERENCES releases (id) ON DELETE CASCADE,
    status         text NOT NULL CHECK (status IN ('running', 'complete', 'failed', 'superseded')),
    error          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz
);
CREATE UNIQUE INDEX deployments_one_running ON deployments (app_id) WHERE status = 'running';

-- Custom routes; the default route <app>.<domain> is not stored. tls_cert
-- and tls_key are PEM, both empty without a certificate.
CREATE TABLE routes (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    domain         text NOT NULL UNIQUE CHECK (domain ~ '^(\*\.)?[a-z0-9.-]{1,253}$'),
    app_id         uuid NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    https_only     boolean NOT NULL DEFAULT false,
    tls_cert       text NOT NULL DEFAULT '',
    tls_key        text NOT NULL DEFAULT '',
    cert_not_after timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((tls_cert = '') = (tls_key = ''))
);
CREATE INDEX routes_app_id ON routes (app_id);

-- +goose Down
DROP TABLE routes;
DROP TABLE deployments;
DROP TABLE formations;
