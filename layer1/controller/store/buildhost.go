package store

import (
	"context"
	"fmt"
)

// BuildHost returns the ID of the host where the last successful build
// job of app ran, which keeps the app's build cache; "" when no build of
// app has succeeded yet. It returns ErrAppNotFound when app is missing.
func (s *Store) BuildHost(ctx context.Context, app string) (string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var host string
	err := s.pool.QueryRow(ctx, `SELECT build_host FROM apps WHERE name = $1`, app).Scan(&host)
	return host, appErr("get the build host of app", app, err)
}

// SetBuildHost records host as the host of app's last successful build
// job. It returns ErrAppNotFound when app is missing.
func (s *Store) SetBuildHost(ctx context.Context, app, host string) error {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE apps SET build_host = $2 WHERE name = $1`, app, host)
	if err != nil {
		return wrap("set the build host of app "+app, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("set the build host of app %s: %w", app, ErrAppNotFound)
	}
	return nil
}
