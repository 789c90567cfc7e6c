package discovery_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

func newClient(t *testing.T) (*discovery.Client, *clientv3.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs etcd")
	}
	etcd := testenv.Etcd(t)
	return discovery.New(etcd, keyspace.MustNew("test"), 0, nil), etcd
}

func grant(t *testing.T, etcd *clientv3.Client, ttl int64) clientv3.LeaseID {
	t.Helper()
	l, err := etcd.Grant(t.Context(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return l.ID
}

// next waits for the first snapshot accepted by ok.
func next(t *testing.T, ch <-chan discovery.Snapshot, ok func(discovery.Snapshot) bool) discovery.Snapshot {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s, open := <-ch:
			if !open {
				t.Fatal("watch closed")
			}
			if ok(s) {
				return s
			}
		case <-deadline:
			t.Fatal("no matching snapshot")
		}
	}
}

func TestRegisterListDeregister(t *testing.T) {
	d, etcd := newClient(t)
	ctx := t.Context()
	lease := grant(t, etcd, 30)
	for _, inst := range []discovery.Instance{
		{ID: "job-b", Addr: "127.0.0.1:2002", Meta: map[string]string{"app": "demo"}},
		{ID: "job-a", Addr: "127.0.0.1:2001"},
	} {
		if err := d.Register(ctx, lease, "demo-web", inst); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Register(ctx, lease, "other-web", discovery.Instance{ID: "job-c", Addr: "127.0.0.1:2003"}); err != nil {
		t.Fatal(err)
	}
	got, rev, err := d.List(ctx, "demo-web")
	if err != nil {
		t.Fatal(err)
	}
	if rev == 0 || len(got) != 2 || got[0].ID != "job-a" || got[1].ID != "job-b" || got[1].Meta["app"] != "demo" || got[0].Service != "demo-web" {
		t.Fatalf("List = %+v (rev %d)", got, rev)
	}
	if err := d.Deregister(ctx, "demo-web", "job-a"); err != nil {
		t.Fatal(err)
	}
	if err := d.Deregister(ctx, "demo-web", "job-a"); err != nil {
		t.Fatalf("second deregister: %v", err)
	}
	got, _, err = d.List(ctx, "demo-web")
	if err != nil || len(got) != 1 || got[0].ID != "job-b" {
		t.Fatalf("after deregister: %+v, %v", got, err)
	}
}

func TestRegisterRejectsInvalid(t *testing.T) {
	d, etcd := newClient(t)
	lease := grant(t, etcd, 30)
	cases := []struct {
		name    string
		service string
		inst    discovery.Instance
	}{
		{"empty service", "", discovery.Instance{ID: "a", Addr: "127.0.0.1:1"}},
		{"slash in service", "a/b", discovery.Instance{ID: "a", Addr: "127.0.0.1:1"}},
		{"empty id", "svc", discovery.Instance{Addr: "127.0.0.1:1"}},
		{"slash in id", "svc", discovery.Instance{ID: "x/y", Addr: "127.0.0.1:1"}},
		{"no address", "svc", discovery.Instance{ID: "a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := d.Register(t.Context(), lease, tc.service, tc.inst); err == nil {
				t.Fatal("Register accepted an invalid instance")
			}
		})
	}
}

func TestWatchFollowsChangesAndLeaseExpiry(t *testing.T) {
	d, etcd := newClient(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := d.Watch(ctx, "demo-web")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, func(s discovery.Snapshot) bool { return len(s.Services["demo-web"]) == 0 })

	short := grant(t, etcd, 2)
	long := grant(t, etcd, 60)
	if err := d.Register(ctx, short, "demo-web", discovery.Instance{ID: "j1", Addr: "127.0.0.1:1001"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Register(ctx, long, "demo-web", discovery.Instance{ID: "j2", Addr: "127.0.0.1:1002"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Register(ctx, long, "unrelated", discovery.Instance{ID: "j3", Addr: "127.0.0.1:1003"}); err != nil {
		t.Fatal(err)
	}
	s := next(t, ch, func(s discovery.Snapshot) bool { return len(s.Services["demo-web"]) == 2 })
	if _, ok := s.Services["unrelated"]; ok {
		t.Fatal("a watch of one service saw another")
	}
	// The instance under the short lease goes when the lease expires, as
	// when a host stops heartbeating.
	s = next(t, ch, func(s discovery.Snapshot) bool { return len(s.Services["demo-web"]) == 1 })
	if s.Services["demo-web"][0].ID != "j2" {
		t.Fatalf("after expiry: %+v", s.Services)
	}

	all, err := d.Watch(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s = next(t, all, func(s discovery.Snapshot) bool { return len(s.Services) == 2 })
	if len(s.Services["unrelated"]) != 1 || len(s.Services["demo-web"]) != 1 {
		t.Fatalf("watch of all services: %+v", s.Services)
	}
	cancel()
	for range ch { // drains, then closes
	}
}
