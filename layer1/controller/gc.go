package controller

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/blobstore"
)

// deleteAppBlobs deletes every blob of app: slugs, build cache, leftovers
// of builds.
func (s *Server) deleteAppBlobs(ctx context.Context, app string) error {
	st, err := s.blobStore(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, prefix := range []string{slugsPrefix, cachesPrefix, buildsPrefix} {
		if _, err := st.DeletePrefix(ctx, prefix+app+"/"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pruneSlugs deletes the slugs of app that no kept release references
// (see store.KeptSlugs): the slugs of old releases, and those of builds
// that never became a release.
func (s *Server) pruneSlugs(ctx context.Context, app string) error {
	st, err := s.blobStore(ctx)
	if err != nil {
		return err
	}
	kept, err := s.store.KeptSlugs(ctx, app, s.cfg.slugsKept())
	if err != nil {
		return err
	}
	list, err := st.List(ctx, slugsPrefix+app+"/")
	if err != nil {
		return err
	}
	var errs []error
	for _, b := range list {
		if kept[b.Path] {
			continue
		}
		if err := st.Delete(ctx, b.Path); err != nil && !errors.Is(err, blobstore.ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// collectGarbage deletes what builds cut off by the end of their
// controller left behind (their job's formation, their blobs under
// builds/: anything older than twice the build timeout belongs to no
// running build), and the blobs of apps that no longer exist.
func (s *Server) collectGarbage(ctx context.Context) error {
	var errs []error
	if err := s.removeStaleBuildJobs(ctx); err != nil {
		errs = append(errs, err)
	}
	st, err := s.blobStore(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if _, err := st.DeleteOlder(ctx, buildsPrefix, time.Now().Add(-2*s.cfg.buildTimeout())); err != nil {
		errs = append(errs, err)
	}
	// The blobs are listed before the apps: a blob listed is an existing
	// app's, or its app is gone for good.
	var blobs []blobstore.Blob
	for _, prefix := range []string{slugsPrefix, cachesPrefix, buildsPrefix} {
		list, err := st.List(ctx, prefix)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		blobs = append(blobs, list...)
	}
	apps, err := s.store.ListApps(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	exists := make(map[string]bool, len(apps))
	for _, a := range apps {
		exists[a.Name] = true
	}
	done := map[string]bool{}
	for _, b := range blobs {
		// b.Path is <kind>/<app>/...
		kind, rest, _ := strings.Cut(b.Path, "/")
		app, _, _ := strings.Cut(rest, "/")
		prefix := kind + "/" + app + "/"
		if exists[app] || done[prefix] {
			continue
		}
		done[prefix] = true
		if _, err := st.DeletePrefix(ctx, prefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeStaleBuildJobs deletes the formations of build jobs older than
// twice the build timeout: their build ended without removing them (its
// controller stopped), and the mirror leaves one-off formations alone.
func (s *Server) removeStaleBuildJobs(ctx context.Context) error {
	kvs, err := s.mirror.list(ctx, s.space.Formations())
	if err != nil {
		return err
	}
	var errs []error
	for key, v := range kvs {
		var f keyspace.Formation
		if json.Unmarshal(v, &f) != nil || !f.Template.OneOff || f.Type != BuildType ||
			!strings.HasPrefix(f.Release, buildReleasePrefix) || time.Since(f.UpdatedAt) < 2*s.cfg.buildTimeout() {
			continue
		}
		if err := s.mirror.delete(ctx, key); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("removed the job of a build that was cut off", "key", key)
	}
	return errors.Join(errs...)
}
