package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// appColumns selects an app with the version of its current release, from
// apps a LEFT JOIN releases cur ON cur.id = a.release_id.
const appColumns = `a.id::text, a.name, a.created_at, COALESCE(cur.version, 0), a.https_only`

// The store's App values leave GitURL and WebURL empty: they depend on the
// controller's configuration, not on the database.

func scanApp(row pgx.Row) (types.App, error) {
	var a types.App
	var created time.Time
	if err := row.Scan(&a.ID, &a.Name, &created, &a.Release, &a.HTTPSOnly); err != nil {
		return types.App{}, err
	}
	a.CreatedAt = created.UTC()
	return a, nil
}

// CreateApp creates the app name. It returns ErrConflict when the name is
// taken.
func (s *Store) CreateApp(ctx context.Context, name string) (types.App, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	row := s.pool.QueryRow(ctx, `INSERT INTO apps (name) VALUES ($1)
		RETURNING id::text, name, created_at, 0, https_only`, name)
	a, err := scanApp(row)
	return a, wrap("create app "+name, err)
}

// ListApps returns all apps, sorted by name.
func (s *Store) ListApps(ctx context.Context) ([]types.App, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+appColumns+`
		FROM apps a LEFT JOIN releases cur ON cur.id = a.release_id
		ORDER BY a.name`)
	if err != nil {
		return nil, wrap("list apps", err)
	}
	apps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (types.App, error) { return scanApp(r) })
	if err != nil {
		return nil, wrap("list apps", err)
	}
	return apps, nil
}

// GetApp returns the app name, or ErrAppNotFound.
func (s *Store) GetApp(ctx context.Context, name string) (types.App, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	row := s.pool.QueryRow(ctx, `SELECT `+appColumns+`
		FROM apps a LEFT JOIN releases cur ON cur.id = a.release_id
		WHERE a.name = $1`, name)
	a, err := scanApp(row)
	return a, appErr("get app", name, err)
}

// SetHTTPSOnly turns the app-wide HTTPS-only switch of app on or off and
// returns the app, or ErrAppNotFound.
func (s *Store) SetHTTPSOnly(ctx context.Context, name string, on bool) (types.App, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	row := s.pool.QueryRow(ctx, `UPDATE apps a SET https_only = $2
		FROM apps x LEFT JOIN releases cur ON cur.id = x.release_id
		WHERE a.name = $1 AND x.id = a.id RETURNING `+appColumns, name, on)
	a, err := scanApp(row)
	return a, appErr("set https_only of app", name, err)
}

// DeleteApp deletes the app name with its config vars and releases, or
// returns ErrAppNotFound.
func (s *Store) DeleteApp(ctx context.Context, name string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM apps WHERE name = $1`, name)
	if err != nil {
		return wrap("delete app "+name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete app %s: %w", name, ErrAppNotFound)
	}
	return nil
}

// appErr wraps err like wrap, with ErrAppNotFound for a missing row.
func appErr(op, app string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s %s: %w", op, app, ErrAppNotFound)
	}
	return wrap(op+" "+app, err)
}
