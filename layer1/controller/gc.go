package controller

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// deleteAppBlobs deletes every blob of app: slugs, build cache, leftovers
// of builds.
func (s *Server) deleteAppBlobs(ctx context.Context, app string) error {
	st, err := s.blobStore(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, prefix := range []string{build.SlugsPrefix, cachesPrefix, build.BuildsPrefix} {
		if _, err := st.DeletePrefix(ctx, prefix+app+"/"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pruneSlugs deletes the slugs of app that no kept release references
// (see store.KeptSlugs): the slugs of old releases, and those of builds
// that never became a release. It returns how many it deleted.
func (s *Server) pruneSlugs(ctx context.Context, app string) (int, error) {
	st, err := s.blobStore(ctx)
	if err != nil {
		return 0, err
	}
	kept, err := s.store.KeptSlugs(ctx, app, s.cfg.slugsKept())
	if err != nil {
		return 0, err
	}
	list, err := st.List(ctx, build.SlugsPrefix+app+"/")
	if err != nil {
		return 0, err
	}
	var errs []error
	deleted := 0
	for _, b := range list {
		if kept[b.Path] {
			continue
		}
		switch err := st.Delete(ctx, b.Path); {
		case err == nil:
			deleted++
		case !errors.Is(err, blobstore.ErrNotFound):
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}

// Timeouts of the garbage collection's steps that are not single queries.
const (
	// etcdMaintenanceTimeout bounds the compaction, and the
	// defragmentation of each member.
	etcdMaintenanceTimeout = time.Minute
	// hostGCTimeout bounds the collection of one host agent.
	hostGCTimeout = 3 * time.Minute
)

// collect runs one whole garbage collection (POST /v1/gc, and every
// Config.GCInterval): the blobs (collectBlobs, then the slugs of every app
// beyond the kept window), PostgreSQL's orphaned large objects, etcd's
// history, and the host agents' containers, volumes and images
// (collectHosts). A failed step does not stop the others; the report lists
// it. Collections never overlap: a second one waits for the first.
func (s *Server) collect(ctx context.Context) types.GCReport {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	start := time.Now()
	rep := types.GCReport{StartedAt: start.UTC(), Hosts: []types.HostGC{}}
	fail := func(what string, err error) {
		rep.Errors = append(rep.Errors, what+": "+err.Error())
		s.log.Warn("garbage collection: "+what+" failed", "err", err)
	}
	n, err := s.collectBlobs(ctx)
	rep.Blobs = n
	if err != nil {
		fail("blobs of deleted apps and cut-off builds", err)
	}
	// A volume created after listedAt is never taken for a deleted app's.
	listedAt := time.Now()
	apps, appsErr := s.store.ListApps(ctx)
	if appsErr != nil {
		fail("list apps", appsErr)
	}
	for _, a := range apps {
		n, err := s.pruneSlugs(ctx, a.Name)
		rep.Slugs += n
		if err != nil && !errors.Is(err, store.ErrAppNotFound) {
			fail("slugs of "+a.Name, err)
		}
	}
	if st, err := s.blobStore(ctx); err != nil {
		fail("large objects", err)
	} else if rep.LargeObjects, err = st.VacuumLargeObjects(ctx); err != nil {
		fail("large objects", err)
	}
	if rep.EtcdRevision, err = s.compactEtcd(ctx); err != nil {
		fail("etcd history", err)
	}
	// Without the list of apps, every volume would look like a deleted
	// app's.
	if appsErr == nil {
		rep.Hosts = s.collectHosts(ctx, apps, listedAt)
		for _, h := range rep.Hosts {
			if h.Error != "" {
				rep.Errors = append(rep.Errors, "host "+h.Host+": "+h.Error)
			}
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	s.log.Info("garbage collection done", "slugs", rep.Slugs, "blobs", rep.Blobs, "large_objects", rep.LargeObjects,
		"etcd_revision", rep.EtcdRevision, "hosts", len(rep.Hosts), "errors", len(rep.Errors), "seconds", rep.Seconds)
	return rep
}

// compactEtcd compacts etcd's history up to the current revision and
// defragments every member, so that the space of old revisions (etcd keeps
// every one until compacted; its own periodic compaction keeps an hour)
// goes back to the file system. Watchers behind the compaction get
// ErrCompacted and re-list (see package etcdwatch). It returns the
// revision compacted to.
func (s *Server) compactEtcd(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdMaintenanceTimeout)
	defer cancel()
	resp, err := s.cfg.Etcd.Get(ctx, s.space.Hosts(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, etcdkv.Err("read etcd's revision", err)
	}
	rev := resp.Header.Revision
	if _, err := s.cfg.Etcd.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil &&
		!errors.Is(err, rpctypes.ErrCompacted) {
		return 0, etcdkv.Err("compact etcd", err)
	}
	var errs []error
	for _, ep := range s.cfg.Etcd.Endpoints() {
		if _, err := s.cfg.Etcd.Defragment(ctx, ep); err != nil {
			errs = append(errs, etcdkv.Err("defragment etcd member "+ep, err))
		}
	}
	return rev, errors.Join(errs...)
}

// collectHosts asks every registered host agent to remove what its host
// no longer needs (client.GCRequest): the cluster's exited containers,
// the volumes of apps not in apps (listed at listedAt), and the tags of
// the stack and builder repositories that are neither the current images
// nor the image of any release, and the cached artifacts no job uses. Hosts that were down when an app was
// deleted are collected by the first collection after they return.
func (s *Server) collectHosts(ctx context.Context, apps []types.App, listedAt time.Time) []types.HostGC {
	out := []types.HostGC{}
	hosts, err := s.listHosts(ctx)
	if err != nil {
		return append(out, types.HostGC{Host: "*", Error: err.Error()})
	}
	req := hostclient.GCRequest{Apps: []string{}, ListedAt: listedAt}
	for _, a := range apps {
		req.Apps = append(req.Apps, a.Name)
	}
	if s.cfg.StackImage != "" && s.cfg.BuilderImage != "" {
		images, err := s.store.ReleaseImages(ctx)
		if err != nil {
			return append(out, types.HostGC{Host: "*", Error: err.Error()})
		}
		req.KeepImages = append(images, s.cfg.StackImage, s.cfg.BuilderImage)
		for _, img := range []string{s.cfg.StackImage, s.cfg.BuilderImage} {
			if repo := imageRepo(img); !slices.Contains(req.ImageRepos, repo) {
				req.ImageRepos = append(req.ImageRepos, repo)
			}
		}
	}
	out = make([]types.HostGC, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, hostGCTimeout)
			defer cancel()
			res, err := s.hosts.get(h.APIURL).GC(hctx, req)
			out[i] = types.HostGC{Host: h.ID, Containers: len(res.Containers), Volumes: len(res.Volumes), Images: len(res.Images),
				Artifacts: res.Artifacts}
			if err != nil {
				out[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return out
}

// imageRepo is the repository of an image reference: without its tag and
// digest.
func imageRepo(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// gc answers POST /v1/gc (admin only): it runs one collection now and
// answers its report. The header is sent first, so that a long collection
// does not run into the client's wait for it; the collection goes on if
// the client leaves.
func (s *Server) gc(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if err := http.NewResponseController(w).Flush(); err != nil {
		s.log.Debug("flush the header of POST /v1/gc", "err", err)
	}
	rep := s.collect(context.WithoutCancel(r.Context()))
	if err := json.NewEncoder(w).Encode(rep); err != nil {
		s.log.Debug("the client of POST /v1/gc left before the report", "err", err)
	}
}

// collectBlobs deletes what builds cut off by the end of their
// controller left behind (their job's formation, their blobs under
// builds/: anything older than twice the build timeout belongs to no
// running build), and the blobs of apps that no longer exist. It returns
// how many blobs it deleted.
func (s *Server) collectBlobs(ctx context.Context) (int, error) {
	var errs []error
	if err := s.removeStaleBuildJobs(ctx); err != nil {
		errs = append(errs, err)
	}
	st, err := s.blobStore(ctx)
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	deleted, err := st.DeleteOlder(ctx, build.BuildsPrefix, time.Now().Add(-2*s.cfg.buildTimeout()))
	if err != nil {
		errs = append(errs, err)
	}
	// The blobs are listed before the apps: a blob listed is an existing
	// app's, or its app is gone for good.
	var blobs []blobstore.Blob
	for _, prefix := range []string{build.SlugsPrefix, cachesPrefix, build.BuildsPrefix} {
		list, err := st.List(ctx, prefix)
		if err != nil {
			return deleted, errors.Join(append(errs, err)...)
		}
		blobs = append(blobs, list...)
	}
	apps, err := s.store.ListApps(ctx)
	if err != nil {
		return deleted, errors.Join(append(errs, err)...)
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
		n, err := st.DeletePrefix(ctx, prefix)
		deleted += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}

// removeStaleBuildJobs deletes the formations of build jobs older than
// twice the build timeout: their build ended without removing them (its
// controller stopped), and the mirror leaves one-off formations alone.
func (s *Server) removeStaleBuildJobs(ctx context.Context) error {
	kvs, err := etcdkv.List(ctx, s.cfg.Etcd, s.space.Formations())
	if err != nil {
		return err
	}
	var errs []error
	for key, v := range kvs {
		var f keyspace.Formation
		if json.Unmarshal(v, &f) != nil || !f.Template.OneOff || f.Type != build.Type ||
			!strings.HasPrefix(f.Release, build.ReleasePrefix) || time.Since(f.UpdatedAt) < 2*s.cfg.buildTimeout() {
			continue
		}
		if err := etcdkv.Delete(ctx, s.cfg.Etcd, key); err != nil {
			errs = append(errs, err)
			continue
		}
		s.log.Info("removed the job of a build that was cut off", "key", key)
	}
	return errors.Join(errs...)
}
