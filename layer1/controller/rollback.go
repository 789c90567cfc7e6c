package controller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"

	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// rollback makes a new release that copies an earlier one (its image or
// slug, config vars and process types) and deploys it
// (POST /v1/apps/{app}/rollback).
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	// The wire type drops a version of 0 (the default); the body is read
	// with a pointer so that an explicit 0 is refused, and with 64 bits so
	// that a version above what PostgreSQL stores names no release rather
	// than failing.
	var req struct {
		Version *int64 `json:"version"`
	}
	if e := decodeJSON(w, r, &req, true); e != nil {
		writeError(w, e)
		return
	}
	version := 0
	if v := req.Version; v != nil {
		switch {
		case *v < 1:
			writeError(w, types.ErrInvalid.WithMessage("version %d: a release version is a positive number (or leave it out for the previous release)", *v))
			return
		case *v > math.MaxInt32:
			if _, err := s.store.GetApp(r.Context(), r.PathValue("app")); err != nil {
				s.fail(w, r, err)
				return
			}
			writeError(w, types.ErrReleaseNotFound.WithMessage("app %q has no release v%d", r.PathValue("app"), *v))
			return
		}
		version = int(*v)
	}
	app := r.PathValue("app")
	rel, d, err := s.store.Rollback(r.Context(), app, version, s.checkSlug)
	var noEarlier *store.NoEarlierReleaseError
	switch {
	case errors.As(err, &noEarlier):
		writeError(w, types.ErrNoRelease.WithMessage("app %q has no release before v%d to roll back to; name one with a version", app, noEarlier.Current))
		return
	case errors.Is(err, store.ErrReleaseNotFound):
		writeError(w, types.ErrReleaseNotFound.WithMessage("app %q has no release v%d", app, version))
		return
	case errors.Is(err, store.ErrNoRelease):
		writeError(w, types.ErrNoRelease.WithMessage("app %q has no release yet, so nothing to roll back to", app))
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	s.log.Info("release created", "app", app, "release", rel.Version, "description", rel.Description, "deployment", d.Status)
	s.deploymentMade(w, r, app, d)
	writeJSON(w, http.StatusCreated, rel)
}

// checkSlug fails with an API error when the slug at path (a release's
// slug_path, "" for a release of an image) is no longer in the blobstore:
// only the newest releases keep theirs (Config.SlugsKept).
func (s *Server) checkSlug(ctx context.Context, path string) error {
	if path == "" {
		return nil
	}
	st, err := s.blobStore(ctx)
	if err == nil {
		_, err = st.Stat(ctx, path)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, blobstore.ErrNotFound):
		return types.ErrInvalid.WithMessage("the slug of that release was deleted (only the %d newest releases keep theirs); roll back to a newer release or push again", s.cfg.slugsKept())
	case errors.Is(err, blobstore.ErrUnavailable):
		return types.ErrUnavailable.WithMessage("PostgreSQL is unreachable; the controller answers again when it is back")
	}
	return fmt.Errorf("check slug %s: %w", path, err)
}
