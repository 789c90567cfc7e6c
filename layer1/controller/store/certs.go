package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CertRoute is a domain whose certificate the controller obtains with
// ACME: a custom route, or an app's default domain.
type CertRoute struct {
	Domain string
	// App is the app name.
	App string
	// Default is true for the app's default domain <app>.<domain>, whose
	// certificate is kept in default_certs rather than routes.
	Default bool
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

// certTable is the table that keeps the certificate of c.
func (c CertRoute) certTable() string {
	if c.Default {
		return "default_certs"
	}
	return "routes"
}

// CertRoutes returns the domains whose certificate the controller
// obtains: the routes in a CertState and the default domains of
// default_certs, sorted by domain. Wildcard routes are never among them
// (HTTP-01 cannot validate a wildcard).
func (s *Store) CertRoutes(ctx context.Context) ([]CertRoute, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT r.domain, a.name, false, r.cert_state, r.cert_failures,
			COALESCE(r.cert_retry_at, 'epoch'), COALESCE(r.cert_not_after, 'epoch')
		FROM routes r JOIN apps a ON a.id = r.app_id WHERE r.cert_state <> ''
		UNION ALL
		SELECT d.domain, a.name, true, d.cert_state, d.cert_failures,
			COALESCE(d.cert_retry_at, 'epoch'), COALESCE(d.cert_not_after, 'epoch')
		FROM default_certs d JOIN apps a ON a.id = d.app_id
		ORDER BY 1`)
	if err != nil {
		return nil, wrap("list routes with certificates", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (CertRoute, error) {
		var c CertRoute
		err := row.Scan(&c.Domain, &c.App, &c.Default, &c.State, &c.Failures, &c.RetryAt, &c.NotAfter)
		c.RetryAt, c.NotAfter = orZero(c.RetryAt), orZero(c.NotAfter)
		return c, err
	})
	return out, wrap("list routes with certificates", err)
}

// SetRouteCert stores the certificate obtained for c (keyPEM is stored as
// given: the caller seals it) and marks it CertIssued. It returns
// ErrRouteNotFound when the route or app is gone or no longer wants an
// obtained certificate for c.Domain.
func (s *Store) SetRouteCert(ctx context.Context, c CertRoute, certPEM, keyPEM string, notAfter time.Time) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE `+c.certTable()+` SET tls_cert = $2, tls_key = $3, cert_not_after = $4,
		cert_state = 'issued', cert_error = '', cert_failures = 0, cert_retry_at = NULL
		WHERE domain = $1 AND cert_state <> ''`, c.Domain, certPEM, keyPEM, notAfter)
	if err != nil {
		return wrap("store certificate of "+c.Domain, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store certificate of %s: %w", c.Domain, ErrRouteNotFound)
	}
	return nil
}

// SetRouteCertFailure records a failed attempt for c: the server's
// problem, the failures in a row and when to retry. A certificate the
// domain has keeps being served. It returns ErrRouteNotFound as
// SetRouteCert does.
func (s *Store) SetRouteCertFailure(ctx context.Context, c CertRoute, problem string, failures int, retryAt time.Time) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE `+c.certTable()+` SET cert_state = 'failed', cert_error = $2, cert_failures = $3, cert_retry_at = $4
		WHERE domain = $1 AND cert_state <> ''`, c.Domain, problem, failures, retryAt)
	if err != nil {
		return wrap("record certificate failure of "+c.Domain, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record certificate failure of %s: %w", c.Domain, ErrRouteNotFound)
	}
	return nil
}

// WantDefaultCerts makes default_certs hold one row for each app whose
// default domain is <app>.<appDomain>, none when appDomain is "": it
// deletes the rows of another domain (the platform's domain changed) and
// those of a domain that is another app's custom route (which has its own
// certificate), and adds a pending row for every other app without one
// (apps created before ACME was turned on included). It returns how many
// rows it added and deleted.
func (s *Store) WantDefaultCerts(ctx context.Context, appDomain string) (added, deleted int64, err error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM default_certs d USING apps a WHERE a.id = d.app_id
			AND ($1 = '' OR d.domain <> a.name || '.' || $1 OR EXISTS (SELECT 1 FROM routes r WHERE r.domain = d.domain))`, appDomain)
		if err != nil {
			return err
		}
		deleted = tag.RowsAffected()
		if appDomain == "" {
			return nil
		}
		tag, err = tx.Exec(ctx, `INSERT INTO default_certs (app_id, domain)
			SELECT a.id, a.name || '.' || $1 FROM apps a
			WHERE NOT EXISTS (SELECT 1 FROM default_certs d WHERE d.app_id = a.id)
				AND NOT EXISTS (SELECT 1 FROM routes r WHERE r.domain = a.name || '.' || $1)
			ON CONFLICT DO NOTHING`, appDomain)
		if err != nil {
			return err
		}
		added = tag.RowsAffected()
		return nil
	})
	return added, deleted, wrap("reconcile the default domains' certificates", err)
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
