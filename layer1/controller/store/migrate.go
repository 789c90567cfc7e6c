package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrationFiles holds the schema: migrations/NNNNN_name.sql, applied in
// order. A released migration is never edited; changes come as new files.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

const (
	// migrateTimeout bounds Migrate when ctx has no deadline.
	migrateTimeout = 2 * time.Minute
	// lockRetries is how many times, a second apart, Migrate tries to take
	// the migration lock that another process holds.
	lockRetries = 60
)

// Migrate applies the migrations that databaseURL lacks. Several processes
// may call it at once: an advisory lock makes them take turns, and the
// migrations already applied are skipped.
func Migrate(ctx context.Context, databaseURL string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, migrateTimeout)
		defer cancel()
	}
	connConfig, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("migrate the database: parse its URL: %w", err)
	}
	if connConfig.ConnectTimeout == 0 {
		connConfig.ConnectTimeout = connectTimeout
	}
	db := stdlib.OpenDB(*connConfig)
	defer db.Close()

	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("migrate the database: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, lockRetries))
	if err != nil {
		return fmt.Errorf("migrate the database: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate the database: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return wrap("migrate the database", err)
	}
	for _, r := range results {
		log.Info("applied migration", "version", r.Source.Version, "duration", r.Duration)
	}
	version, err := provider.GetDBVersion(ctx)
	if err != nil {
		return wrap("migrate the database: read the schema version", err)
	}
	log.Info("database schema up to date", "version", version, "applied", len(results))
	return nil
}
