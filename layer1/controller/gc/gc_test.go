package gc

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/blobstore"
	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/store"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithPostgres(m))
}

// openedBlobs is a blobstore that is open already.
type openedBlobs struct{ st *blobstore.Store }

var _ Blobs = openedBlobs{}

func (b openedBlobs) Open(context.Context) (*blobstore.Store, error) { return b.st, nil }

// TestCollectGarbage checks what the periodic collection deletes: the job
// and the blobs of builds cut off long ago, and the blobs of deleted apps.
func TestCollectGarbage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := testenv.NewDatabase(t)
	if err := store.Migrate(ctx, db, nil); err != nil {
		t.Fatal(err)
	}
	sto, err := store.Open(db, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sto.Close()
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st, err := blobstore.Open(ctx, pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	etcd := testenv.Etcd(t)
	space := keyspace.MustNew("c-gc")
	c := New(Config{Etcd: etcd, Space: space, Store: sto, Blobs: openedBlobs{st}, BuildTimeout: time.Minute})
	if _, err := sto.CreateApp(ctx, "live"); err != nil {
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
		key := space.Formation("live", release, build.Type)
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

	if _, err := c.collectBlobs(ctx); err != nil {
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
	resp, err := etcd.Get(ctx, space.Formations(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
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
