package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

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

	rep := s.collector.Collect(ctx)
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
	if rep := s.collector.Collect(ctx); rep.Slugs != 0 || rep.Blobs != 0 || rep.LargeObjects != 0 || len(rep.Errors) != 0 {
		t.Errorf("second report = %+v, want nothing deleted", rep)
	}
}
