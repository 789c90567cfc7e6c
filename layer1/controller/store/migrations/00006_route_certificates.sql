-- Certificates the controller obtains with ACME for custom routes, and the
-- ACME account key.

-- +goose Up
-- cert_state: '' for a route without an obtained certificate (none yet,
-- or one uploaded with the route), else 'pending', 'issued' or 'failed'.
-- cert_error is the ACME server's problem of the last failure;
-- cert_failures counts the failures in a row; cert_retry_at is when the
-- next attempt may start.
ALTER TABLE routes
    ADD COLUMN cert_state    text NOT NULL DEFAULT '' CHECK (cert_state IN ('', 'pending', 'issued', 'failed')),
    ADD COLUMN cert_error    text NOT NULL DEFAULT '',
    ADD COLUMN cert_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN cert_retry_at timestamptz;

-- One ACME account per directory URL; key_sealed is its PEM private key,
-- sealed with the data dir's secrets key.
CREATE TABLE acme_accounts (
    directory  text PRIMARY KEY,
    key_sealed text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE acme_accounts;
ALTER TABLE routes DROP COLUMN cert_retry_at, DROP COLUMN cert_failures, DROP COLUMN cert_error, DROP COLUMN cert_state;
