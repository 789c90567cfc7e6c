package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// NewRelease is what CreateRelease stores; the version, ID and time are
// assigned.
type NewRelease struct {
	Description string
	Image       string
	// Slug is the digest of the slug, empty for a plain image; SlugPath
	// is the blobstore path of the slug, set exactly when Slug is.
	Slug      string
	SlugPath  string
	Config    map[string]string
	Processes map[string]types.Process
}

// CreateRelease stores the next release of app (version = highest + 1) and
// returns it, or ErrAppNotFound. It does not make it the app's current
// release.
func (s *Store) CreateRelease(ctx context.Context, app string, r NewRelease) (types.Release, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var rel types.Release
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The row lock serialises version numbers per app.
		a, err := lockApp(ctx, tx, app)
		if err != nil {
			return err
		}
		rel, err = insertRelease(ctx, tx, a, r)
		return err
	})
	if err != nil {
		return types.Release{}, appErr("create release of app", app, err)
	}
	return rel, nil
}

// releaseColumns are the columns scanRelease reads, in order;
// releaseColumnsR the same from the alias r.
const (
	releaseColumns  = `id::text, version, created_at, description, image, slug, config, processes`
	releaseColumnsR = `r.id::text, r.version, r.created_at, r.description, r.image, r.slug, r.config, r.processes`
)

func scanRelease(row pgx.Row, app string) (types.Release, error) {
	r := types.Release{App: app}
	var created time.Time
	err := row.Scan(&r.ID, &r.Version, &created, &r.Description, &r.Image, &r.Slug, &r.Config, &r.Processes)
	r.CreatedAt = created.UTC()
	return r, err
}

// ListReleases returns the releases of app, newest first, or ErrAppNotFound.
func (s *Store) ListReleases(ctx context.Context, app string) ([]types.Release, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+releaseColumnsR+`
		FROM apps a JOIN releases r ON r.app_id = a.id
		WHERE a.name = $1 ORDER BY r.version DESC`, app)
	if err != nil {
		return nil, wrap("list releases of app "+app, err)
	}
	releases, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (types.Release, error) { return scanRelease(r, app) })
	if err != nil {
		return nil, wrap("list releases of app "+app, err)
	}
	if len(releases) == 0 {
		// No release, or no app?
		if _, err := s.GetApp(ctx, app); err != nil {
			return nil, err
		}
	}
	return releases, nil
}

// GetRelease returns the release version of app, or ErrAppNotFound or
// ErrReleaseNotFound.
func (s *Store) GetRelease(ctx context.Context, app string, version int) (types.Release, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	row := s.pool.QueryRow(ctx, `SELECT `+releaseColumnsR+`
		FROM apps a JOIN releases r ON r.app_id = a.id
		WHERE a.name = $1 AND r.version = $2`, app, version)
	rel, err := scanRelease(row, app)
	if err == nil {
		return rel, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return types.Release{}, wrap("get release of app "+app, err)
	}
	if _, err := s.GetApp(ctx, app); err != nil {
		return types.Release{}, err
	}
	return types.Release{}, fmt.Errorf("get release v%d of app %s: %w", version, app, ErrReleaseNotFound)
}

// KeptSlugs returns the slug paths that app's releases still need: those
// of its newest keep releases, of its current release and of any release
// with formations (one being deployed). It returns ErrAppNotFound for a
// missing app.
func (s *Store) KeptSlugs(ctx context.Context, app string, keep int) (map[string]bool, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT r.slug_path FROM apps a JOIN releases r ON r.app_id = a.id
		WHERE a.name = $1 AND r.slug_path <> '' AND (
			r.id = a.release_id
			OR r.id IN (SELECT release_id FROM formations WHERE app_id = a.id)
			OR r.version > (SELECT COALESCE(max(version), 0) FROM releases WHERE app_id = a.id) - $2)`, app, keep)
	if err != nil {
		return nil, wrap("list the slugs of app "+app, err)
	}
	paths, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("list the slugs of app "+app, err)
	}
	if len(paths) == 0 {
		if _, err := s.GetApp(ctx, app); err != nil {
			return nil, err
		}
	}
	out := make(map[string]bool, len(paths))
	for _, p := range paths {
		out[p] = true
	}
	return out, nil
}

// SlugPaths returns the blobstore paths of the slugs of app's releases by
// version, for the releases built from source. It returns ErrAppNotFound
// for a missing app.
func (s *Store) SlugPaths(ctx context.Context, app string) (map[int]string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT r.version, r.slug_path FROM apps a JOIN releases r ON r.app_id = a.id
		WHERE a.name = $1 AND r.slug_path <> ''`, app)
	if err != nil {
		return nil, wrap("list the slug paths of app "+app, err)
	}
	out := map[int]string{}
	var version int
	var path string
	if _, err := pgx.ForEachRow(rows, []any{&version, &path}, func() error {
		out[version] = path
		return nil
	}); err != nil {
		return nil, wrap("list the slug paths of app "+app, err)
	}
	if len(out) == 0 {
		if _, err := s.GetApp(ctx, app); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReleaseImages returns the images that any release of any app runs,
// sorted.
func (s *Store) ReleaseImages(ctx context.Context) ([]string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT image FROM releases WHERE image <> '' ORDER BY image`)
	if err != nil {
		return nil, wrap("list the images of releases", err)
	}
	images, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("list the images of releases", err)
	}
	return images, nil
}
