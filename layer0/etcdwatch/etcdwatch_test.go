package etcdwatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/etcdwatch"
)

func TestWatchSnapshots(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd")
	}
	etcd := testenv.Etcd(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, err := etcd.Put(ctx, "/p/a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Put(ctx, "/q/other", "x"); err != nil {
		t.Fatal(err)
	}
	ch, err := etcdwatch.Watch(ctx, etcdwatch.Config{Client: etcd, Prefix: "/p/"})
	if err != nil {
		t.Fatal(err)
	}
	wait := func(ok func(etcdwatch.Snapshot) bool) etcdwatch.Snapshot {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case s := <-ch:
				if ok(s) {
					return s
				}
			case <-deadline:
				t.Fatal("no matching snapshot")
			}
		}
	}
	s := wait(func(s etcdwatch.Snapshot) bool { return len(s.KVs) == 1 })
	if string(s.KVs["/p/a"]) != "1" {
		t.Fatalf("first snapshot %v", s.KVs)
	}
	// A burst of writes: the reader may skip snapshots but always ends on
	// the latest state.
	for i := range 50 {
		if _, err := etcd.Put(ctx, fmt.Sprintf("/p/k%02d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := etcd.Delete(ctx, "/p/a"); err != nil {
		t.Fatal(err)
	}
	s = wait(func(s etcdwatch.Snapshot) bool { _, has := s.KVs["/p/a"]; return len(s.KVs) == 50 && !has })
	if string(s.KVs["/p/k49"]) != "49" {
		t.Fatalf("last snapshot %v", s.KVs)
	}
	// After a compaction the watcher keeps working (a new watch from a
	// compacted revision re-lists).
	resp, err := etcd.Put(ctx, "/p/after", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Put(ctx, "/p/after2", "2"); err != nil {
		t.Fatal(err)
	}
	wait(func(s etcdwatch.Snapshot) bool { _, ok := s.KVs["/p/after2"]; return ok })
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  etcdwatch.Config
	}{
		{"no client", etcdwatch.Config{Prefix: "/p/"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err == nil {
				t.Fatal("Validate accepted a bad config")
			}
		})
	}
}
