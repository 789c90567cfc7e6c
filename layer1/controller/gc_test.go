package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestCollectGarbage checks what the periodic collection deletes: the job
// and the blobs of builds cut off long ago, and the blobs of deleted apps.
func TestCollectGarbage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := testenv.NewDatabase(t)
	if err := Migrate(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	etcd := testenv.Etcd(t)
	s, err := New(Config{DatabaseURL: db, Cluster: "c-gc", Etcd: etcd, HostToken: "secret", BuildTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.store.CreateApp(ctx, "live"); err != nil {
		t.Fatal(err)
	}
	st, err := s.blobStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"slugs/live/a.tgz", "caches/live/cache.tgz", "builds/live/new/source.tar", "builds/live/old/source.tar",
		"slugs/gone/a.tgz", "caches/gone/cache.tgz", "builds/gone/x/result.json",
	} {
		if _, err := st.Put(ctx, path, strings.NewReader(path), 0); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `UPDATE blobstore_blobs SET created_at = now() - interval '1 hour' WHERE path LIKE 'builds/live/old/%'`); err != nil {
		t.Fatal(err)
	}
	formation := func(release string, oneOff bool, age time.Duration) string {
		key := s.space.Formation("live", release, build.Type)
		v, _ := json.Marshal(keyspace.Formation{App: "live", Release: release, Type: build.Type, Count: 1,
			Template:  keyspace.JobSpec{App: "live", Release: release, Type: build.Type, OneOff: oneOff},
			UpdatedAt: time.Now().Add(-age)})
		if _, err := etcd.Put(ctx, key, string(v)); err != nil {
			t.Fatal(err)
		}
		return key
	}
	stale := formation("build-old", true, time.Hour)
	fresh := formation("build-new", true, time.Second)

	if _, err := s.collectBlobs(ctx); err != nil {
		t.Fatal(err)
	}
	blobs, err := st.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, b := range blobs {
		paths = append(paths, b.Path)
	}
	if want := []string{"builds/live/new/source.tar", "caches/live/cache.tgz", "slugs/live/a.tgz"}; !slices.Equal(paths, want) {
		t.Errorf("blobs after the collection = %v, want %v", paths, want)
	}
	resp, err := etcd.Get(ctx, s.space.Formations(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	if !slices.Equal(keys, []string{fresh}) {
		t.Errorf("formations after the collection = %v, want only %s (not %s)", keys, fresh, stale)
	}
}

// TestCollect runs a whole collection: the slugs beyond the kept window go
// (and their releases are marked as such in the list), the blobs of a
// deleted app go, an orphaned large object is unlinked and etcd is
// compacted.
func TestCollect(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := testenv.NewDatabase(t)
	if err := Migrate(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	etcd := testenv.Etcd(t)
	s, err := New(Config{DatabaseURL: db, Cluster: "c-collect", Etcd: etcd, HostToken: "secret", SlugsKept: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.store.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	st, err := s.blobStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	put := func(path string) {
		t.Helper()
		if _, err := st.Put(ctx, path, strings.NewReader(path), 0); err != nil {
			t.Fatal(err)
		}
	}
	for v := 1; v <= 4; v++ {
		path := fmt.Sprintf("slugs/demo/b%d.tgz", v)
		put(path)
		if _, err := s.store.CreateRelease(ctx, "demo", store.NewRelease{Image: "gantry/stack:test", Slug: "sha256:" + strings.Repeat("0", 64),
			SlugPath: path, Processes: map[string]types.Process{"web": {Command: "serve"}}}); err != nil {
			t.Fatal(err)
		}
	}
	put("caches/deleted/cache.tgz")
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, `SELECT lo_from_bytea(0, 'orphan')`); err != nil {
		t.Fatal(err)
	}

	rep := s.collect(ctx)
	if rep.Slugs != 2 || rep.Blobs != 1 || rep.LargeObjects != 1 || rep.EtcdRevision == 0 || len(rep.Errors) != 0 || len(rep.Hosts) != 0 {
		t.Errorf("report = %+v, want 2 slugs, 1 blob, 1 large object, a revision, no error, no host", rep)
	}
	rels, err := s.store.ListReleases(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.markDeletedSlugs(ctx, "demo", rels); err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if want := r.Version <= 2; r.SlugDeleted != want {
			t.Errorf("v%d: SlugDeleted = %v, want %v", r.Version, r.SlugDeleted, want)
		}
	}
	if rep := s.collect(ctx); rep.Slugs != 0 || rep.Blobs != 0 || rep.LargeObjects != 0 || len(rep.Errors) != 0 {
		t.Errorf("second report = %+v, want nothing deleted", rep)
	}
}
