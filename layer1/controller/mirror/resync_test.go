package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/store"
)

// racingSource is PostgreSQL's state read just before an app is made and
// its first build starts: the read returns apps, and then (key set) the
// build writes its one-off formation to etcd.
type racingSource struct {
	etcd *clientv3.Client
	key  string
	val  []byte
	apps []string
}

func (s racingSource) Mirror(ctx context.Context, _ string) (store.MirrorState, error) {
	st := store.MirrorState{Apps: s.apps}
	if s.key != "" {
		if _, err := s.etcd.Put(ctx, s.key, string(s.val)); err != nil {
			return store.MirrorState{}, err
		}
	}
	return st, nil
}

// TestResyncKeepsNewBuilds checks that a resync never removes the one-off
// formation of a build that starts while it runs, and still removes those
// of deleted apps.
func TestResyncKeepsNewBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd")
	}
	etcd := testenv.Etcd(t)
	for _, tc := range []struct {
		name     string
		app      string
		before   bool     // the formation is in etcd before the resync
		apps     []string // the apps PostgreSQL has
		wantKept bool
	}{
		{"build of an app made during the resync", "fresh", false, nil, true},
		{"build of an existing app", "old", true, []string{"old"}, true},
		{"build of a deleted app", "gone", true, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			space := keyspace.MustNew(fmt.Sprintf("c-%s-%d", tc.app, time.Now().UnixNano()))
			f := keyspace.Formation{App: tc.app, Release: "build-1", Type: "build",
				Template: keyspace.JobSpec{App: tc.app, Release: "build-1", Type: "build", Image: "none", OneOff: true}}
			key := space.Formation(f.App, f.Release, f.Type)
			val, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			src := racingSource{etcd: etcd, apps: tc.apps}
			if tc.before {
				if _, err := etcd.Put(t.Context(), key, string(val)); err != nil {
					t.Fatal(err)
				}
			} else {
				src.key, src.val = key, val
			}
			m := New(Config{Etcd: etcd, Space: space, Source: src, Domain: func(app string) string { return app + ".localhost" }})
			if err := m.Resync(t.Context()); err != nil {
				t.Fatalf("Resync: %v", err)
			}
			resp, err := etcd.Get(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			if kept := len(resp.Kvs) == 1; kept != tc.wantKept {
				t.Errorf("the one-off formation kept: %v, want %v", kept, tc.wantKept)
			}
		})
	}
}
