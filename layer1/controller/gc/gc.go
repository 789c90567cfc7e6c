// Package gc is the controller's garbage collection: the blobs no release
// or build needs (old slugs, leftovers of builds cut off by the end of
// their controller, the blobs of deleted apps), PostgreSQL's orphaned large
// objects, etcd's history, and what the host agents keep of deleted apps
// and old images. Run collects at start and every interval; Collect runs
// one collection (POST /v1/gc). See docs/ARCHITECTURE.md.
package gc

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
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
	"github.com/gantryhq/gantry/layer1/controller/pglock"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// CachesPrefix starts the build caches of earlier versions,
// caches/<app>/cache.tgz (now a volume); the other blobs are those of
// builds (see build.SlugsPrefix and build.BuildsPrefix).
const CachesPrefix = "caches/"

// Store is the controller's state that a collection reads.
type Store interface {
	ListApps(ctx context.Context) ([]types.App, error)
	KeptSlugs(ctx context.Context, app string, keep int) (map[string]bool, error)
	ReleaseImages(ctx context.Context) ([]string, error)
}

var _ Store = (*store.Store)(nil)

// Blobs opens the blobstore; it fails with blobstore.ErrUnavailable while
// PostgreSQL is unreachable.
type Blobs interface {
	Open(ctx context.Context) (*blobstore.Store, error)
}

// Hosts reaches the host agents.
type Hosts interface {
	// List returns the hosts whose lease is alive and that have an API.
	List(ctx context.Context) ([]keyspace.Host, error)
	// GC asks the agent at apiURL to collect.
	GC(ctx context.Context, apiURL string, req hostclient.GCRequest) (hostclient.GCResult, error)
}

// Config is what a Collector needs. Every field is required unless it
// says otherwise.
type Config struct {
	// Etcd is the client of the cluster's etcd, compacted by each
	// collection.
	Etcd *clientv3.Client
	// Space is the cluster's key space.
	Space keyspace.Space
	Store Store
	Blobs Blobs
	Hosts Hosts
	// StackImage and BuilderImage are the current images, which the
	// hosts keep; "" (either) leaves every image alone.
	StackImage, BuilderImage string
	// SlugsKept is how many releases of an app keep their slugs.
	SlugsKept int
	// BuildTimeout is the longest a build runs: what builds left twice
	// as long ago is garbage.
	BuildTimeout time.Duration
	// Interval is the time between two collections of Run.
	Interval time.Duration
	// Locks, when set, give the connections of the collections' lock
	// across the controllers of a cluster (package pglock): the
	// controller of every host collects, one at a time. Nil serialises
	// only this Collector's.
	Locks pglock.Conns
	// Logger receives the collections' logs; nil discards them.
	Logger *slog.Logger
}

// lockSpace is the space of the PostgreSQL advisory lock of the
// collections ("gc  ").
const lockSpace int32 = 0x67632020

// Collector runs the garbage collections; they never overlap.
type Collector struct {
	cfg Config
	log *slog.Logger
	// mu serialises the collections (see Collect).
	mu sync.Mutex
}

// New returns the Collector of cfg.
func New(cfg Config) *Collector {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{cfg: cfg, log: log}
}

// Run deletes at once the blobs that builds cut off by the end of an
// earlier controller left behind, and those of deleted apps
// (collectBlobs), then runs the whole garbage collection (see Collect)
// every Config.Interval until ctx ends. A failed part is logged and
// retried at the next collection.
func (c *Collector) Run(ctx context.Context) {
	if _, err := c.collectBlobs(ctx); err != nil && ctx.Err() == nil {
		c.log.Warn("blob garbage collection failed; retrying at the next collection", "interval", c.cfg.Interval, "err", err)
	}
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.Collect(ctx)
		}
	}
}

// DeleteAppBlobs deletes every blob of app: slugs, build cache, leftovers
// of builds.
func (c *Collector) DeleteAppBlobs(ctx context.Context, app string) error {
	st, err := c.cfg.Blobs.Open(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, prefix := range []string{build.SlugsPrefix, CachesPrefix, build.BuildsPrefix} {
		if _, err := st.DeletePrefix(ctx, prefix+app+"/"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// PruneSlugs deletes the slugs of app that no kept release references
// (see store.KeptSlugs): the slugs of old releases, and those of builds
// that never became a release. It returns how many it deleted.
func (c *Collector) PruneSlugs(ctx context.Context, app string) (int, error) {
	st, err := c.cfg.Blobs.Open(ctx)
	if err != nil {
		return 0, err
	}
	kept, err := c.cfg.Store.KeptSlugs(ctx, app, c.cfg.SlugsKept)
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

// Collect runs one whole garbage collection (POST /v1/gc, and every
// Config.GCInterval): the blobs (collectBlobs, then the slugs of every app
// beyond the kept window), PostgreSQL's orphaned large objects, etcd's
// history, and the host agents' containers, volumes and images
// (collectHosts). A failed step does not stop the others; the report lists
// it. Collections never overlap: a second one waits for the first, of
// this controller or, with Config.Locks, of any.
func (c *Collector) Collect(ctx context.Context) types.GCReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	rep := types.GCReport{StartedAt: start.UTC(), Hosts: []types.HostGC{}}
	fail := func(what string, err error) {
		rep.Errors = append(rep.Errors, what+": "+err.Error())
		c.log.Warn("garbage collection: "+what+" failed", "err", err)
	}
	if c.cfg.Locks != nil {
		unlock, err := pglock.Lock(ctx, c.cfg.Locks, pglock.Key{Space: lockSpace, Name: "gc"}, nil, c.log)
		if err != nil {
			fail("the collections' lock", err)
			rep.Seconds = time.Since(start).Seconds()
			return rep
		}
		defer unlock()
	}
	n, err := c.collectBlobs(ctx)
	rep.Blobs = n
	if err != nil {
		fail("blobs of deleted apps and cut-off builds", err)
	}
	// A volume created after listedAt is never taken for a deleted app's.
	listedAt := time.Now()
	apps, appsErr := c.cfg.Store.ListApps(ctx)
	if appsErr != nil {
		fail("list apps", appsErr)
	}
	for _, a := range apps {
		n, err := c.PruneSlugs(ctx, a.Name)
		rep.Slugs += n
		if err != nil && !errors.Is(err, store.ErrAppNotFound) {
			fail("slugs of "+a.Name, err)
		}
	}
	if st, err := c.cfg.Blobs.Open(ctx); err != nil {
		fail("large objects", err)
	} else if rep.LargeObjects, err = st.VacuumLargeObjects(ctx); err != nil {
		fail("large objects", err)
	}
	if rep.EtcdRevision, err = c.compactEtcd(ctx); err != nil {
		fail("etcd history", err)
	}
	// Without the list of apps, every volume would look like a deleted
	// app's.
	if appsErr == nil {
		rep.Hosts = c.collectHosts(ctx, apps, listedAt)
		for _, h := range rep.Hosts {
			if h.Error != "" {
				rep.Errors = append(rep.Errors, "host "+h.Host+": "+h.Error)
			}
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	c.log.Info("garbage collection done", "slugs", rep.Slugs, "blobs", rep.Blobs, "large_objects", rep.LargeObjects,
		"etcd_revision", rep.EtcdRevision, "hosts", len(rep.Hosts), "errors", len(rep.Errors), "seconds", rep.Seconds)
	return rep
}

// compactEtcd compacts etcd's history up to the current revision and
// defragments every member, so that the space of old revisions (etcd keeps
// every one until compacted; its own periodic compaction keeps an hour)
// goes back to the file system. Watchers behind the compaction get
// ErrCompacted and re-list (see package etcdwatch). It returns the
// revision compacted to.
func (c *Collector) compactEtcd(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdMaintenanceTimeout)
	defer cancel()
	resp, err := c.cfg.Etcd.Get(ctx, c.cfg.Space.Hosts(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, etcdkv.Err("read etcd's revision", err)
	}
	rev := resp.Header.Revision
	if _, err := c.cfg.Etcd.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil &&
		!errors.Is(err, rpctypes.ErrCompacted) {
		return 0, etcdkv.Err("compact etcd", err)
	}
	var errs []error
	for _, ep := range c.cfg.Etcd.Endpoints() {
		if _, err := c.cfg.Etcd.Defragment(ctx, ep); err != nil {
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
func (c *Collector) collectHosts(ctx context.Context, apps []types.App, listedAt time.Time) []types.HostGC {
	out := []types.HostGC{}
	hosts, err := c.cfg.Hosts.List(ctx)
	if err != nil {
		return append(out, types.HostGC{Host: "*", Error: err.Error()})
	}
	req := hostclient.GCRequest{Apps: []string{}, ListedAt: listedAt}
	for _, a := range apps {
		req.Apps = append(req.Apps, a.Name)
	}
	if c.cfg.StackImage != "" && c.cfg.BuilderImage != "" {
		images, err := c.cfg.Store.ReleaseImages(ctx)
		if err != nil {
			return append(out, types.HostGC{Host: "*", Error: err.Error()})
		}
		req.KeepImages = append(images, c.cfg.StackImage, c.cfg.BuilderImage)
		for _, img := range []string{c.cfg.StackImage, c.cfg.BuilderImage} {
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
			res, err := c.cfg.Hosts.GC(hctx, h.APIURL, req)
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

// collectBlobs deletes what builds cut off by the end of their
// controller left behind (their job's formation, their blobs under
// builds/: anything older than twice the build timeout belongs to no
// running build), and the blobs of apps that no longer exist. It returns
// how many blobs it deleted.
func (c *Collector) collectBlobs(ctx context.Context) (int, error) {
	var errs []error
	if err := c.removeStaleBuildJobs(ctx); err != nil {
		errs = append(errs, err)
	}
	st, err := c.cfg.Blobs.Open(ctx)
	if err != nil {
		return 0, errors.Join(append(errs, err)...)
	}
	deleted, err := st.DeleteOlder(ctx, build.BuildsPrefix, time.Now().Add(-2*c.cfg.BuildTimeout))
	if err != nil {
		errs = append(errs, err)
	}
	// The blobs are listed before the apps: a blob listed is an existing
	// app's, or its app is gone for good.
	var blobs []blobstore.Blob
	for _, prefix := range []string{build.SlugsPrefix, CachesPrefix, build.BuildsPrefix} {
		list, err := st.List(ctx, prefix)
		if err != nil {
			return deleted, errors.Join(append(errs, err)...)
		}
		blobs = append(blobs, list...)
	}
	apps, err := c.cfg.Store.ListApps(ctx)
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
func (c *Collector) removeStaleBuildJobs(ctx context.Context) error {
	kvs, err := etcdkv.List(ctx, c.cfg.Etcd, c.cfg.Space.Formations())
	if err != nil {
		return err
	}
	var errs []error
	for key, v := range kvs {
		var f keyspace.Formation
		if json.Unmarshal(v, &f) != nil || !f.Template.OneOff || f.Type != build.Type ||
			!strings.HasPrefix(f.Release, build.ReleasePrefix) || time.Since(f.UpdatedAt) < 2*c.cfg.BuildTimeout {
			continue
		}
		if err := etcdkv.Delete(ctx, c.cfg.Etcd, key); err != nil {
			errs = append(errs, err)
			continue
		}
		c.log.Info("removed the job of a build that was cut off", "key", key)
	}
	return errors.Join(errs...)
}
