-- The certificates the controller obtains with ACME for the apps' default
-- domains <app>.<domain>, and the app-wide HTTPS-only switch.

-- +goose Up
-- https_only redirects plain HTTP to HTTPS on every domain of the app that
-- has a certificate (gantry https-only on).
ALTER TABLE apps ADD COLUMN https_only boolean NOT NULL DEFAULT false;

-- One row per app whose default domain gets a certificate; it goes with
-- the app. domain is the default domain the certificate is for: a row
-- whose domain is no longer the app's (the platform's domain changed) is
-- replaced. The cert_* columns mean what they mean in routes.
CREATE TABLE default_certs (
    app_id         uuid PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    domain         text NOT NULL UNIQUE CHECK (domain ~ '^[a-z0-9.-]{1,253}$'),
    tls_cert       text NOT NULL DEFAULT '',
    tls_key        text NOT NULL DEFAULT '',
    cert_not_after timestamptz,
    cert_state     text NOT NULL DEFAULT 'pending' CHECK (cert_state IN ('pending', 'issued', 'failed')),
    cert_error     text NOT NULL DEFAULT '',
    cert_failures  integer NOT NULL DEFAULT 0,
    cert_retry_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((tls_cert = '') = (tls_key = ''))
);

-- +goose Down
DROP TABLE default_certs;
ALTER TABLE apps DROP COLUMN https_only;
