package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CertRoute is a custom route whose certificate the controller obtains
// with ACME.
type CertRoute struct {
	Domain string
	// App is the app name.
	App string
	// State is types.CertPending, types.CertIssued or types.CertFailed.
	State string
	// Failures counts the failed attempts in a row.
	Failures int
	// RetryAt is when the next attempt may start after a failure; zero
	// otherwise.
	RetryAt time.Time
	// NotAfter is when the obtained certificate expires; zero without one.
	NotAfter time.Time
}

// CertRoutes returns the routes whose certificate the controller obtains:
// those in a CertState, sorted by domain. Wildcard routes are never among
// them (HTTP-01 cannot validate a wildcard).
func (s *Store) CertRoutes(ctx context.Context) ([]CertRoute, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT r.domain, a.name, r.cert_state, r.cert_failures,
		COALESCE(r.cert_retry_at, 'epoch'), COALESCE(r.cert_not_after, 'epoch')
		FROM routes r JOIN apps a ON a.id = r.app_id
		WHERE r.cert_state <> '' ORDER BY r.domain`)
	if err != nil {
		return nil, wrap("list routes with certificates", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (CertRoute, error) {
		var c CertRoute
		err := row.Scan(&c.Domain, &c.App, &c.State, &c.Failures, &c.RetryAt, &c.NotAfter)
		c.RetryAt, c.NotAfter = orZero(c.RetryAt), orZero(c.NotAfter)
		return c, err
	})
	return out, wrap("list routes with certificates", err)
}

// SetRouteCert stores the certificate obtained for domain (keyPEM is
// stored as given: the caller seals it) and marks it CertIssued. It
// returns ErrRouteNotFound when the route is gone or no longer wants an
// obtained certificate.
func (s *Store) SetRouteCert(ctx context.Context, domain, certPEM, keyPEM string, notAfter time.Time) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE routes SET tls_cert = $2, tls_key = $3, cert_not_after = $4,
		cert_state = 'issued', cert_error = '', cert_failures = 0, cert_retry_at = NULL
		WHERE domain = $1 AND cert_state <> ''`, domain, certPEM, keyPEM, notAfter)
	if err != nil {
		return wrap("store certificate of "+domain, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store certificate of %s: %w", domain, ErrRouteNotFound)
	}
	return nil
}

// SetRouteCertFailure records a failed attempt for domain: the server's
// problem, the failures in a row and when to retry. A certificate the
// route has keeps being served. It returns ErrRouteNotFound as
// SetRouteCert does.
func (s *Store) SetRouteCertFailure(ctx context.Context, domain, problem string, failures int, retryAt time.Time) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE routes SET cert_state = 'failed', cert_error = $2, cert_failures = $3, cert_retry_at = $4
		WHERE domain = $1 AND cert_state <> ''`, domain, problem, failures, retryAt)
	if err != nil {
		return wrap("record certificate failure of "+domain, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record certificate failure of %s: %w", domain, ErrRouteNotFound)
	}
	return nil
}

// ACMEAccountKey returns the sealed account key stored for the ACME
// directory, storing newKey first when there is none (so that concurrent
// callers agree on one key).
func (s *Store) ACMEAccountKey(ctx context.Context, directory, newKey string) (string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var key string
	err := s.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO acme_accounts (directory, key_sealed) VALUES ($1, $2)
			ON CONFLICT (directory) DO NOTHING RETURNING key_sealed)
		SELECT key_sealed FROM ins UNION ALL SELECT key_sealed FROM acme_accounts WHERE directory = $1 LIMIT 1`,
		directory, newKey).Scan(&key)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("acme account of %s: not stored", directory)
	}
	return key, wrap("acme account of "+directory, err)
}

// WantCerts marks the routes that have no certificate and are not
// wildcards CertPending, so that the controller obtains their
// certificates (routes added before ACME was turned on). It returns how
// many it marked.
func (s *Store) WantCerts(ctx context.Context) (int64, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE routes SET cert_state = 'pending'
		WHERE cert_state = '' AND tls_cert = '' AND domain NOT LIKE '*.%'`)
	if err != nil {
		return 0, wrap("mark routes without certificate", err)
	}
	return tag.RowsAffected(), nil
}
