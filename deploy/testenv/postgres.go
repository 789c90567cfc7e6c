package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/pgserver"
)

const (
	pgStartTimeout = 2 * time.Minute
	pgOpTimeout    = 30 * time.Second
)

var errNoRunWithPostgres = errors.New("no PostgreSQL for this test package: call testenv.RunWithPostgres from TestMain")

// postgres is the test package's shared server: RunWithPostgres enables it,
// the first NewDatabase starts it, RunWithPostgres stops it.
var postgres struct {
	enabled bool
	once    sync.Once
	dir     string
	srv     *pgserver.Server
	err     error // why srv is nil
	seq     atomic.Int64
}

// RunWithPostgres runs the test package with one private PostgreSQL server
// (fsync off) in a temporary directory, and stops and removes it afterwards.
// Call it from TestMain: os.Exit(testenv.RunWithPostgres(m)). The server
// starts with the first NewDatabase, so test binaries that need none (-short,
// fuzzing workers, -run of other tests) start none. When it cannot start
// (e.g. the PostgreSQL binaries are missing), every NewDatabase fails with the
// reason and the install hint.
func RunWithPostgres(m *testing.M) int {
	postgres.enabled = true
	code := m.Run()
	if postgres.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), pgOpTimeout)
		defer cancel()
		if err := postgres.srv.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop PostgreSQL:", err)
		}
	}
	if postgres.dir != "" {
		os.RemoveAll(postgres.dir)
	}
	return code
}

// sharedPostgres starts the package's server on first use.
func sharedPostgres() (*pgserver.Server, error) {
	postgres.once.Do(func() {
		if !postgres.enabled {
			postgres.err = errNoRunWithPostgres
			return
		}
		dir, err := os.MkdirTemp("", "gantry-pg-")
		if err != nil {
			postgres.err = fmt.Errorf("create a directory for PostgreSQL: %w", err)
			return
		}
		postgres.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
		defer cancel()
		postgres.srv, err = pgserver.Start(ctx, pgserver.Config{Dir: dir, DisableFsync: true})
		if err != nil {
			postgres.err = fmt.Errorf("start PostgreSQL for the tests: %w", err)
		}
	})
	return postgres.srv, postgres.err
}

// NewDatabase creates a fresh, empty database on the package's server (see
// RunWithPostgres) for one test and returns its pgx connection string. The
// database is dropped in t.Cleanup, closing any connection still open.
// Under -short the test is skipped.
func NewDatabase(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; skipped under -short")
	}
	srv, err := sharedPostgres()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("test_%d", postgres.seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), pgOpTimeout)
	defer cancel()
	if err := srv.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pgOpTimeout)
		defer cancel()
		if err := srv.DropDatabase(ctx, name); err != nil {
			t.Errorf("drop test database: %v", err)
		}
	})
	return srv.URL(name)
}

// StartPostgres starts a PostgreSQL server (fsync off) for one test, e.g. one
// that the test stops on purpose, and stops it in t.Cleanup; stopping it
// earlier is fine. dir "" means a new temporary directory, removed in
// t.Cleanup; pass the Dir of an earlier server to start on its data again.
// Under -short the test is skipped.
func StartPostgres(t testing.TB, dir string) *pgserver.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL; skipped under -short")
	}
	if dir == "" {
		// Not t.TempDir: its path holds the test name and could exceed
		// the unix socket path limit.
		d, err := os.MkdirTemp("", "gantry-pg-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgStartTimeout)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Config{Dir: dir, DisableFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), pgOpTimeout)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop PostgreSQL: %v", err)
		}
	})
	return srv
}
