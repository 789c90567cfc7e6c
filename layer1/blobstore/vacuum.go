package blobstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// vacuumTimeout bounds VacuumLargeObjects: the search for orphans, their
// unlinking and the VACUUM of pg_largeobject.
const vacuumTimeout = 10 * time.Minute

// VacuumLargeObjects does what PostgreSQL's vacuumlo does, then vacuums:
// it unlinks every large object that no oid (or lo) column of any user
// table of the database references, and runs VACUUM on pg_largeobject so
// that their pages can be reused. It returns how many large objects it
// unlinked.
//
// The store itself never leaves an orphan (a blob's large object is
// created and unlinked in the transaction that writes or deletes its
// row), but a database restored, copied or written by an older version may
// hold some, and PostgreSQL keeps their pages until a VACUUM. Large
// objects being written by a transaction not yet committed are invisible
// here, so an upload in progress is never touched. Scanning every oid
// column, not only the store's, keeps the large objects of other tables
// safe when the database is shared. A VACUUM the role may not run (it is
// not the owner of pg_largeobject) is skipped by PostgreSQL with a
// warning, not an error.
func (s *Store) VacuumLargeObjects(ctx context.Context) (int, error) {
	const op = "vacuum large objects"
	ctx, cancel := context.WithTimeout(ctx, vacuumTimeout)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), quote_ident(a.attname)
		FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm')
			AND t.typname IN ('oid', 'lo')
			AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`)
	if err != nil {
		return 0, wrap(op, err)
	}
	type column struct{ table, name string }
	cols, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (column, error) {
		var c column
		err := row.Scan(&c.table, &c.name)
		return c, err
	})
	if err != nil {
		return 0, wrap(op, err)
	}
	// Each name is quoted by quote_ident above.
	var refs []string
	for _, c := range cols {
		refs = append(refs, fmt.Sprintf("SELECT %s::oid FROM %s WHERE %s IS NOT NULL", c.name, c.table, c.name))
	}
	query := `SELECT oid FROM pg_largeobject_metadata`
	if len(refs) > 0 {
		query += ` WHERE oid NOT IN (` + strings.Join(refs, " UNION ") + `)`
	}
	rows, err = s.pool.Query(ctx, query)
	if err != nil {
		return 0, wrap(op, err)
	}
	orphans, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
	if err != nil {
		return 0, wrap(op, err)
	}
	unlinked := 0
	for _, oid := range orphans {
		// lo_unlink of an object unlinked meanwhile fails: tolerate it by
		// checking the metadata in the same statement.
		var n int
		err := s.pool.QueryRow(ctx, `SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata WHERE oid = $1`, oid).Scan(&n)
		if err != nil {
			return unlinked, wrap(op, fmt.Errorf("unlink large object %d: %w", oid, err))
		}
		unlinked += n
	}
	if err := s.Vacuum(ctx); err != nil {
		return unlinked, err
	}
	if unlinked > 0 {
		s.log.Info("orphaned large objects unlinked", "count", unlinked)
	}
	return unlinked, nil
}

// Vacuum runs VACUUM on pg_largeobject, so that the pages of the blobs
// deleted so far are reused by the next ones instead of growing the table:
// without it, the table grows by every blob written until autovacuum comes
// by. Its cost is a scan of the table. A VACUUM the role may not run is
// skipped by PostgreSQL with a warning.
func (s *Store) Vacuum(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, vacuumTimeout)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `VACUUM pg_largeobject`); err != nil {
		return wrap("VACUUM pg_largeobject", err)
	}
	return nil
}
