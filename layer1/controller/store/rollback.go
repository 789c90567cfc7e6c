package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// ErrNoEarlierRelease means that a rollback without a version found no
// release to go back to: no release older than the current one was ever
// current. See NoEarlierReleaseError.
var ErrNoEarlierRelease = errors.New("no earlier release")

// NoEarlierReleaseError is returned by Rollback when the app has no
// release to roll back to by default. It wraps ErrNoEarlierRelease.
type NoEarlierReleaseError struct {
	// Current is the version of the app's current release.
	Current int
}

func (e *NoEarlierReleaseError) Error() string {
	return fmt.Sprintf("no release before v%d was ever deployed", e.Current)
}

func (e *NoEarlierReleaseError) Unwrap() error { return ErrNoEarlierRelease }

// SlugCheck is called by Rollback, inside its transaction, with the
// blobstore path of the slug of the release rolled back to ("" for a
// release of an image); an error stops the rollback and is returned.
type SlugCheck func(ctx context.Context, slugPath string) error

// Rollback makes the next release of app a copy of its release version
// (image, slug, config vars and process types) with the description
// "rollback to vN", makes the app's config vars those of that release, and
// deploys the new release like DeployRelease, all in one transaction.
// Version 0 means the newest release older than the current one that was
// ever current (a release whose deployment failed or was superseded is
// skipped). check, when not nil, vets the slug first.
//
// It returns ErrAppNotFound, ErrNoRelease when the app has no release,
// ErrReleaseNotFound for a version the app does not have, and a
// *NoEarlierReleaseError when version is 0 and there is nothing to roll
// back to.
func (s *Store) Rollback(ctx context.Context, app string, version int, check SlugCheck) (types.Release, Deployment, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var rel types.Release
	var d Deployment
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		if a.current == "" {
			return ErrNoRelease
		}
		if version == 0 {
			if version, err = previousVersion(ctx, tx, a); err != nil {
				return err
			}
		}
		var slugPath string
		row := tx.QueryRow(ctx, `SELECT `+releaseColumns+`, slug_path FROM releases WHERE app_id = $1 AND version = $2`, a.id, version)
		target := types.Release{App: app}
		err = row.Scan(&target.ID, &target.Version, &target.CreatedAt, &target.Description, &target.Image,
			&target.Slug, &target.Config, &target.Processes, &slugPath)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("release v%d: %w", version, ErrReleaseNotFound)
		}
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(ctx, slugPath); err != nil {
				return err
			}
		}
		if err := checkReleaseConfig(a, target.Config); err != nil {
			return err
		}
		if err := replaceConfig(ctx, tx, a.id, target.Config); err != nil {
			return err
		}
		if rel, err = insertRelease(ctx, tx, a, NewRelease{
			Description: fmt.Sprintf("rollback to v%d", version),
			Image:       target.Image,
			Slug:        target.Slug,
			SlugPath:    slugPath,
			Config:      target.Config,
			Processes:   target.Processes,
		}); err != nil {
			return err
		}
		d, err = deploy(ctx, tx, a, rel)
		return err
	})
	if err != nil {
		return types.Release{}, Deployment{}, appErr("roll back app", app, err)
	}
	return rel, d, nil
}

// previousVersion returns the version a rollback of the locked app a goes
// back to by default: the newest release older than the current one that a
// deployment made current (complete, or failed with nothing to fall back
// to, which leaves the release current).
func previousVersion(ctx context.Context, tx pgx.Tx, a appRow) (int, error) {
	var current int
	var previous *int
	err := tx.QueryRow(ctx, `SELECT c.version, (
			SELECT max(r.version) FROM releases r
			WHERE r.app_id = $1 AND r.version < c.version AND EXISTS (
				SELECT 1 FROM deployments d WHERE d.new_release_id = r.id AND d.status IN ('complete', 'failed')))
		FROM releases c WHERE c.id = $2`, a.id, a.current).Scan(&current, &previous)
	if err != nil {
		return 0, err
	}
	if previous == nil {
		return 0, &NoEarlierReleaseError{Current: current}
	}
	return *previous, nil
}

// replaceConfig makes config the config vars of app appID.
func replaceConfig(ctx context.Context, tx pgx.Tx, appID string, config map[string]string) error {
	batch := &pgx.Batch{}
	batch.Queue(`DELETE FROM config_vars WHERE app_id = $1`, appID)
	for name, value := range config {
		batch.Queue(`INSERT INTO config_vars (app_id, name, value) VALUES ($1, $2, $3)`, appID, name, value)
	}
	return tx.SendBatch(ctx, batch).Close()
}
