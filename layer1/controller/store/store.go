// Package store keeps the controller's state in PostgreSQL: apps, config
// vars, releases, formations, deployments, routes, SSH keys and API tokens.
// Its schema is a series of SQL migrations embedded in the binary and
// applied by Migrate.
//
// Every query runs under a deadline. Errors wrap the sentinels below, mapped
// from PostgreSQL error codes and connection failures, never from message
// text.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors returned by the store, wrapped with what failed.
var (
	// ErrNotFound means that the row asked for does not exist. The more
	// specific errors below wrap it.
	ErrNotFound        = errors.New("not found")
	ErrAppNotFound     = fmt.Errorf("app %w", ErrNotFound)
	ErrReleaseNotFound = fmt.Errorf("release %w", ErrNotFound)
	ErrKeyNotFound     = fmt.Errorf("SSH key %w", ErrNotFound)
	ErrRouteNotFound   = fmt.Errorf("route %w", ErrNotFound)
	// ErrDeploymentNotFound means that a deployment is gone, with its app.
	ErrDeploymentNotFound = fmt.Errorf("deployment %w", ErrNotFound)
	// ErrNoRelease means that the app has no release yet.
	ErrNoRelease = errors.New("the app has no release")
	// ErrUnknownProcessType means that the app's release has no such
	// process type; see ProcessTypeError.
	ErrUnknownProcessType = errors.New("unknown process type")
	// ErrConflict means that a row with the same unique value exists.
	ErrConflict = errors.New("already exists")
	// ErrUnavailable means that PostgreSQL could not be reached or did not
	// answer in time.
	ErrUnavailable = errors.New("PostgreSQL is unreachable")
)

const (
	// DefaultQueryTimeout bounds each store call when Config.QueryTimeout
	// is zero.
	DefaultQueryTimeout = 5 * time.Second
	// connectTimeout bounds the opening of one connection.
	connectTimeout = 5 * time.Second
	// maxConns is the size of the connection pool.
	maxConns = 10
)

// SQLSTATE codes the store maps to its errors.
const (
	codeUniqueViolation    = "23505"
	classConnection        = "08" // connection_exception and its subclasses
	codeAdminShutdown      = "57P01"
	codeCrashShutdown      = "57P02"
	codeCannotConnectNow   = "57P03"
	codeTooManyConnections = "53300"
)

// Store is the controller's PostgreSQL state. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

// Open returns a Store on databaseURL (a pgx connection string). It does not
// connect: connections are opened when needed, so Open succeeds while
// PostgreSQL is down and calls fail with ErrUnavailable until it is back.
// queryTimeout bounds each call; zero means DefaultQueryTimeout.
func Open(databaseURL string, queryTimeout time.Duration) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("create connection pool: %w", err)
	}
	if queryTimeout <= 0 {
		queryTimeout = DefaultQueryTimeout
	}
	return &Store{pool: pool, timeout: queryTimeout}, nil
}

// Close closes the connections. It is idempotent.
func (s *Store) Close() {
	s.pool.Close()
}

// Ping checks that PostgreSQL answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	return wrap("ping", s.pool.Ping(ctx))
}

// deadline bounds a store call.
func (s *Store) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// wrap maps err to the store's sentinels and adds what failed.
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrUnavailable),
		errors.Is(err, ErrNoRelease), errors.Is(err, ErrUnknownProcessType):
		return fmt.Errorf("%s: %w", op, err) // mapped already
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	case isUnavailable(err):
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation {
		return fmt.Errorf("%s: %w (%s)", op, ErrConflict, pgErr.ConstraintName)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// isUnavailable reports whether err means that PostgreSQL cannot be reached
// or stopped answering, as opposed to an error in a query.
func isUnavailable(err error) bool {
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == classConnection,
			pgErr.Code == codeAdminShutdown,
			pgErr.Code == codeCrashShutdown,
			pgErr.Code == codeCannotConnectNow,
			pgErr.Code == codeTooManyConnections:
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
