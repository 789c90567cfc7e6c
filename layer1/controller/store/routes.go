package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// Route is a custom route of an app: its domain goes to the app's web
// processes.
type Route struct {
	Domain string
	// App is the app name.
	App       string
	HTTPSOnly bool
	// TLSCert and TLSKey are the PEM certificate chain and key; both empty
	// without a certificate.
	TLSCert string
	TLSKey  string
	// CertNotAfter is when the certificate expires; zero without one.
	CertNotAfter time.Time
	CreatedAt    time.Time
	// CertState is the state of the certificate the controller obtains
	// with ACME: "" when it obtains none (a certificate came with the
	// route, or none was asked for yet), types.CertPending,
	// types.CertIssued or types.CertFailed.
	CertState string
	// CertError is the ACME server's problem of the last failure; empty
	// unless CertState is CertFailed.
	CertError string
	// CertRetryAt is when the next attempt may start after a failure;
	// zero otherwise.
	CertRetryAt time.Time
}

// DomainTakenError is returned when a domain belongs to a route already. It
// wraps ErrConflict.
type DomainTakenError struct {
	Domain string
	// App owns the domain; Default is true when it is that app's default
	// domain.
	App     string
	Default bool
}

func (e *DomainTakenError) Error() string {
	if e.Default {
		return fmt.Sprintf("%s is the default domain of app %s", e.Domain, e.App)
	}
	return fmt.Sprintf("%s is a route of app %s", e.Domain, e.App)
}

func (e *DomainTakenError) Unwrap() error { return ErrConflict }

const routeColumns = `r.domain, a.name, r.https_only, r.tls_cert, r.tls_key, COALESCE(r.cert_not_after, 'epoch'), r.created_at,
	r.cert_state, r.cert_error, COALESCE(r.cert_retry_at, 'epoch')`

func scanRoute(row pgx.Row) (Route, error) {
	var r Route
	err := row.Scan(&r.Domain, &r.App, &r.HTTPSOnly, &r.TLSCert, &r.TLSKey, &r.CertNotAfter, &r.CreatedAt,
		&r.CertState, &r.CertError, &r.CertRetryAt)
	r.CertNotAfter = orZero(r.CertNotAfter)
	r.CertRetryAt = orZero(r.CertRetryAt)
	r.CreatedAt = r.CreatedAt.UTC()
	return r, err
}

// orZero returns t in UTC, or the zero time for the epoch that stands for
// NULL.
func orZero(t time.Time) time.Time {
	if t.Equal(time.Unix(0, 0)) {
		return time.Time{}
	}
	return t.UTC()
}

// AddRoute stores r as a route of app r.App (CreatedAt is set by the
// database) and returns it. It returns ErrAppNotFound, or a
// *DomainTakenError when another route has the domain or the domain is the
// default domain <app>.<appDomain> of an app. The caller validates the
// route.
func (s *Store) AddRoute(ctx context.Context, r Route, appDomain string) (Route, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, r.App)
		if err != nil {
			return err
		}
		var owner string
		err = tx.QueryRow(ctx, `SELECT name FROM apps WHERE name || '.' || $2 = $1`, r.Domain, appDomain).Scan(&owner)
		if err == nil {
			return &DomainTakenError{Domain: r.Domain, App: owner, Default: true}
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		err = tx.QueryRow(ctx, `SELECT a.name FROM routes r JOIN apps a ON a.id = r.app_id WHERE r.domain = $1`, r.Domain).Scan(&owner)
		if err == nil {
			return &DomainTakenError{Domain: r.Domain, App: owner}
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var notAfter *time.Time
		if !r.CertNotAfter.IsZero() {
			notAfter = &r.CertNotAfter
		}
		return tx.QueryRow(ctx, `INSERT INTO routes (domain, app_id, https_only, tls_cert, tls_key, cert_not_after, cert_state)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at`,
			r.Domain, a.id, r.HTTPSOnly, r.TLSCert, r.TLSKey, notAfter, r.CertState).Scan(&r.CreatedAt)
	})
	if err != nil {
		return Route{}, appErr("add route "+r.Domain+" to app", r.App, err)
	}
	r.CreatedAt = r.CreatedAt.UTC()
	return r, nil
}

// DefaultCert is the certificate the controller obtains for an app's
// default domain (see WantDefaultCerts).
type DefaultCert struct {
	// App is the app name.
	App string
	// Domain is the default domain the certificate is for; it may be an
	// earlier one when the platform's domain changed and the
	// certificate manager has not caught up yet.
	Domain string
	// TLSCert and TLSKey are the PEM chain and the sealed key; empty
	// until the first certificate is obtained.
	TLSCert string
	TLSKey  string
	// The Cert fields mean what they mean in Route.
	CertNotAfter time.Time
	CertState    string
	CertError    string
	CertRetryAt  time.Time
}

// defaultCertColumns selects a DefaultCert from default_certs d JOIN apps a.
const defaultCertColumns = `a.name, d.domain, d.tls_cert, d.tls_key, COALESCE(d.cert_not_after, 'epoch'), d.cert_state, d.cert_error,
	COALESCE(d.cert_retry_at, 'epoch')`

func scanDefaultCert(row pgx.Row) (DefaultCert, error) {
	var d DefaultCert
	err := row.Scan(&d.App, &d.Domain, &d.TLSCert, &d.TLSKey, &d.CertNotAfter, &d.CertState, &d.CertError, &d.CertRetryAt)
	d.CertNotAfter, d.CertRetryAt = orZero(d.CertNotAfter), orZero(d.CertRetryAt)
	return d, err
}

// AppRoutes is what the route list of an app is made of.
type AppRoutes struct {
	App types.App
	// Web is true when the app's current release has a web process, which
	// gives the app its default route.
	Web bool
	// Routes are the custom routes, sorted by domain.
	Routes []Route
	// DefaultCert is the certificate state of the default domain; nil
	// when the controller obtains none for it.
	DefaultCert *DefaultCert
}

// ListRoutes returns the custom routes of app and whether it has a default
// route, or ErrAppNotFound.
func (s *Store) ListRoutes(ctx context.Context, app string) (AppRoutes, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var out AppRoutes
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out.App, err = scanApp(tx.QueryRow(ctx, `SELECT `+appColumns+`
			FROM apps a LEFT JOIN releases cur ON cur.id = a.release_id WHERE a.name = $1`, app))
		if err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE((SELECT r.processes ? 'web'
			FROM apps a JOIN releases r ON r.id = a.release_id WHERE a.name = $1), false)`, app).Scan(&out.Web); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT `+routeColumns+` FROM routes r JOIN apps a ON a.id = r.app_id
			WHERE a.name = $1 ORDER BY r.domain`, app)
		if err != nil {
			return err
		}
		out.Routes, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Route, error) { return scanRoute(r) })
		if err != nil {
			return err
		}
		d, err := scanDefaultCert(tx.QueryRow(ctx, `SELECT `+defaultCertColumns+` FROM default_certs d JOIN apps a ON a.id = d.app_id
			WHERE a.name = $1`, app))
		switch {
		case err == nil:
			out.DefaultCert = &d
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		return nil
	})
	if err != nil {
		return AppRoutes{}, appErr("list routes of app", app, err)
	}
	return out, nil
}

// RemoveRoute deletes the route of domain from app. It returns
// ErrAppNotFound, or ErrRouteNotFound when the app has no such route.
func (s *Store) RemoveRoute(ctx context.Context, app, domain string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM routes WHERE app_id = $1 AND domain = $2`, a.id, domain)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("remove route %s of app %s: %w", domain, app, ErrRouteNotFound)
		}
		return nil
	})
	return appErr("remove route "+domain+" of app", app, err)
}

// RouteOwner returns the app that has a custom route for domain, or
// ErrRouteNotFound.
func (s *Store) RouteOwner(ctx context.Context, domain string) (string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var app string
	err := s.pool.QueryRow(ctx, `SELECT a.name FROM routes r JOIN apps a ON a.id = r.app_id WHERE r.domain = $1`, domain).Scan(&app)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("route %s: %w", domain, ErrRouteNotFound)
	}
	return app, wrap("route "+domain, err)
}
