package store

import (
	"context"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// CurrentRelease returns the current release of app with the blobstore
// path of its slug ("" for an image release), which one-off jobs (gantry
// run) run. It returns ErrAppNotFound, or ErrNoRelease when the app has no
// current release.
func (s *Store) CurrentRelease(ctx context.Context, app string) (types.Release, string, error) {
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var (
		r        = types.Release{App: app}
		id       *string
		created  *time.Time
		slugPath string
	)
	var version *int
	var desc, image, slug *string
	row := s.pool.QueryRow(ctx, `SELECT r.id::text, r.version, r.created_at, r.description, r.image, r.slug, r.config, r.processes,
			COALESCE(r.slug_path, '')
		FROM apps a LEFT JOIN releases r ON r.id = a.release_id
		WHERE a.name = $1`, app)
	err := row.Scan(&id, &version, &created, &desc, &image, &slug, &r.Config, &r.Processes, &slugPath)
	if err != nil {
		return types.Release{}, "", appErr("get the current release of app", app, err)
	}
	if id == nil {
		return types.Release{}, "", wrap("get the current release of app "+app, ErrNoRelease)
	}
	r.ID, r.Version, r.CreatedAt, r.Description, r.Image, r.Slug = *id, *version, created.UTC(), *desc, *image, *slug
	return r, slugPath, nil
}
