package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gantryhq/gantry/deploy/etcdserver"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/etcdmember"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// registerHosts writes hosts under one lease kept alive until the test
// ends, as their agents would.
func (a *api) registerHosts(t *testing.T, hosts ...keyspace.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	lease, err := a.etcd.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	kctx, kcancel := context.WithCancel(context.Background())
	t.Cleanup(kcancel)
	if _, err := a.etcd.KeepAlive(kctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.etcd.Put(ctx, a.space.Host(h.ID), string(b), clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
	}
}

// hostsByID lists the hosts through the API.
func (a *api) hostsByID(t *testing.T) map[string]types.Host {
	t.Helper()
	hosts, err := a.c.ListHosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.Host{}
	for _, h := range hosts {
		out[h.ID] = h
	}
	return out
}

// TestHostsAPI drives GET /v1/hosts, drain, undrain and remove on hosts
// registered in etcd as their agents would, with the jobs of one app
// placed on them as the scheduler would.
func TestHostsAPI(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(c *controller.Config) { c.HostRemoveWait = time.Second })
	start := time.Now()
	deployedApp(t, a, "demo", 2, func() jobBehaviour { return allUp })
	form := a.formations(t, "demo")["v1/web"]
	mem := form.Template.Resources.Memory
	if mem == 0 {
		mem = placement.DefaultMemory
	}
	// h1 runs two jobs; h2 has room for one of them; h3 cannot run jobs;
	// the host "gone" is down and still holds one job.
	closed := "http://127.0.0.1:1"
	a.registerHosts(t,
		keyspace.Host{ID: "h1", Addr: "127.0.0.1", APIURL: closed, Memory: 4 * mem, Healthy: true, Version: "v-test", StartedAt: start},
		keyspace.Host{ID: "h2", Addr: "127.0.0.3", APIURL: closed, Memory: mem + mem/2, Healthy: true, StartedAt: start},
		keyspace.Host{ID: "h3", Addr: "127.0.0.4", APIURL: closed, Memory: 4 * mem, Healthy: false, Reason: "Docker is unreachable", StartedAt: start},
	)
	// (gone's job is of a process type the release does not have.)
	for i, job := range []struct{ host, id, typ string }{{"h1", "j1", "web"}, {"h1", "j2", "web"}, {"gone", "j3", "clock"}} {
		spec := form.Template
		spec.App, spec.Release, spec.Type = form.App, form.Release, job.typ
		a.put(t, a.space.Assignment(job.host, job.id), keyspace.Assignment{JobID: job.id, HostID: job.host, Spec: spec, Index: i + 1, CreatedAt: start})
		a.reportJob(t, keyspace.JobState{JobID: job.id, HostID: job.host, App: "demo", Release: form.Release, Type: job.typ, State: keyspace.StateUp})
	}

	t.Run("list", func(t *testing.T) {
		hosts := a.hostsByID(t)
		if len(hosts) != 4 {
			t.Fatalf("hosts %v: want h1, h2, h3 and gone", hosts)
		}
		for _, tc := range []struct {
			id, state, addr string
			jobs            int
			member, up      bool
		}{
			{"h1", types.HostUp, "127.0.0.1", 2, true, true},
			{"h2", types.HostUp, "127.0.0.3", 0, false, true},
			{"h3", types.HostUnhealthy, "127.0.0.4", 0, false, true},
			{"gone", types.HostDown, "", 1, false, false},
		} {
			h := hosts[tc.id]
			if h.State != tc.state || h.Addr != tc.addr || h.Jobs != tc.jobs || h.EtcdMember != tc.member || h.Drain {
				t.Errorf("%s: %+v; want state %s, addr %q, %d jobs, etcd member %v, not drained", tc.id, h, tc.state, tc.addr, tc.jobs, tc.member)
			}
			if !tc.up {
				if h.LastHeartbeat != nil || h.Usage != nil || !h.StartedAt.IsZero() {
					t.Errorf("%s is down but has a heartbeat, usage or start time: %+v", tc.id, h)
				}
				continue
			}
			// The heartbeat is the lease's last renewal: after it was
			// granted, and not in the future. etcd reports the lease's
			// time left in whole seconds, and the answer is truncated to
			// the second: each may put it up to a second early.
			if hb := h.LastHeartbeat; hb == nil || hb.Before(start.Add(-2*time.Second)) || hb.After(time.Now()) {
				t.Errorf("%s: last heartbeat %v, want between %s and now", tc.id, hb, start.Add(-2*time.Second))
			}
		}
		if r := hosts["h3"].Reason; r != "Docker is unreachable" {
			t.Errorf("h3 reason %q", r)
		}
	})

	t.Run("unknown host", func(t *testing.T) {
		for _, path := range []string{"/v1/hosts/nope/drain", "/v1/hosts/nope/undrain"} {
			resp, body := a.raw(t, "POST", path, "", "Bearer "+a.token)
			if resp.StatusCode != http.StatusNotFound || string(body) != `{"error":{"code":"host_not_found","message":"no host \"nope\" in the cluster; gantry hosts lists them"}}`+"\n" {
				t.Errorf("POST %s = %d %s", path, resp.StatusCode, body)
			}
		}
		_, err := a.c.RemoveHost(t.Context(), "nope")
		wantAPIError(t, err, types.ErrHostNotFound, `no host "nope" in the cluster; gantry hosts lists them`)
	})

	t.Run("admin only", func(t *testing.T) {
		for _, tc := range []struct{ method, path string }{
			{"GET", "/v1/hosts"}, {"POST", "/v1/hosts/h1/drain"}, {"POST", "/v1/hosts/h1/undrain"}, {"DELETE", "/v1/hosts/gone"},
		} {
			for token, status := range map[string]int{"": http.StatusUnauthorized, "Bearer host-token": http.StatusForbidden} {
				if resp, body := a.raw(t, tc.method, tc.path, "", token); resp.StatusCode != status {
					t.Errorf("%s %s with %q = %d %s, want %d", tc.method, tc.path, token, resp.StatusCode, body, status)
				}
			}
		}
		if _, ok := a.kvs(t, a.space.HostFlags())[a.space.HostFlag("h1")]; ok {
			t.Error("a refused drain wrote the flags of h1")
		}
	})

	t.Run("drain with nowhere to go", func(t *testing.T) {
		// An empty host drains at once.
		d, err := a.c.DrainHost(t.Context(), "h2")
		if err != nil || !d.Drain || d.Jobs != 0 || len(d.Stuck) != 0 {
			t.Fatalf("drain h2 = %+v, %v", d, err)
		}
		if h := a.hostsByID(t)["h2"]; h.State != types.HostDrained || !h.Drain {
			t.Errorf("h2 after the drain: %+v", h)
		}
		// h2 drained and h3 unhealthy: h1's jobs have nowhere to go.
		_, err = a.c.DrainHost(t.Context(), "h1")
		wantAPIError(t, err, types.ErrConflict, `no other host can run jobs (none is up, healthy and not drained): draining "h1" would leave its 2 jobs nowhere to go; it stays as it is. Add a host, or undrain one, first`)
		if _, ok := a.kvs(t, a.space.HostFlags())[a.space.HostFlag("h1")]; ok {
			t.Error("the refused drain of h1 wrote its flags")
		}
		u, err := a.c.UndrainHost(t.Context(), "h2")
		if err != nil || u.Drain {
			t.Fatalf("undrain h2 = %+v, %v", u, err)
		}
		if flags := a.kvs(t, a.space.HostFlags()); len(flags) != 0 {
			t.Errorf("flags after the undrain: %v", flags)
		}
		if h := a.hostsByID(t)["h2"]; h.State != types.HostUp || h.Drain {
			t.Errorf("h2 after the undrain: %+v", h)
		}
	})

	t.Run("drain", func(t *testing.T) {
		want := types.HostDrain{Host: "h1", Drain: true, Jobs: 2,
			Stuck: []types.HostJob{{Job: "j2", App: "demo", Type: "web", Index: 2}}}
		for range 2 { // a second drain changes nothing
			d, err := a.c.DrainHost(t.Context(), "h1")
			if err != nil || d.Host != want.Host || !d.Drain || d.Jobs != want.Jobs || len(d.Stuck) != 1 || d.Stuck[0] != want.Stuck[0] {
				t.Fatalf("drain h1 = %+v, %v; want %+v", d, err, want)
			}
		}
		if h := a.hostsByID(t)["h1"]; h.State != types.HostDraining || !h.Drain || h.Jobs != 2 {
			t.Errorf("h1 after the drain: %+v", h)
		}
	})

	t.Run("remove", func(t *testing.T) {
		_, err := a.c.RemoveHost(t.Context(), "h1")
		wantAPIError(t, err, types.ErrConflict, `host "h1" is up (its agent heartbeats): only a host that is down can be removed. To take it out, drain it (gantry host drain h1), stop its agent, then remove it`)

		// No scheduler runs: the removal waits, then answers 202 and
		// leaves the flag for the scheduler.
		r, err := a.c.RemoveHost(t.Context(), "gone")
		if err != nil || r.Done || r.Jobs != 1 {
			t.Fatalf("remove gone = %+v, %v; want 1 job, not done", r, err)
		}
		resp, _ := a.raw(t, "DELETE", "/v1/hosts/gone", "", "Bearer "+a.token)
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("DELETE /v1/hosts/gone = %d, want 202", resp.StatusCode)
		}
		if _, ok := a.kvs(t, a.space.HostFlags())[a.space.HostFlag("gone")]; !ok {
			t.Error("no flags of gone after its removal")
		}
		// The scheduler deletes its assignment: the removal completes and
		// the host is forgotten.
		a.del(t, a.space.Assignment("gone", "j3"))
		r, err = a.c.RemoveHost(t.Context(), "gone")
		if err != nil || !r.Done {
			t.Fatalf("remove gone again = %+v, %v; want done", r, err)
		}
		if _, ok := a.kvs(t, a.space.HostFlags())[a.space.HostFlag("gone")]; ok {
			t.Error("the flags of gone stay after its removal is done")
		}
		if _, ok := a.hostsByID(t)["gone"]; ok {
			t.Error("gone is still listed")
		}
		_, err = a.c.RemoveHost(t.Context(), "gone")
		wantAPIError(t, err, types.ErrHostNotFound, `no host "gone" in the cluster; gantry hosts lists them`)
	})
}

// etcdCluster starts an etcd cluster of one member per name, as hosts
// join (the first alone, each next one added as a learner, started and
// promoted), and returns its members by name and a client of them all.
// Everything is closed in t.Cleanup.
func etcdCluster(t *testing.T, names ...string) (map[string]*etcdserver.Server, *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	servers := map[string]*etcdserver.Server{}
	var endpoints []string
	var first *clientv3.Client
	for i, name := range names {
		cfg := etcdserver.Config{Dir: t.TempDir(), ClientAddr: testenv.FreeAddr(t), PeerAddr: testenv.FreeAddr(t), Name: name, NoFsync: true}
		peer := "http://" + cfg.PeerAddr
		if i > 0 {
			ms, err := etcdmember.Add(ctx, first, name, peer)
			if err != nil || ms == nil {
				t.Fatalf("add %s: %+v, %v", name, ms, err)
			}
			cfg.InitialCluster = ms.InitialCluster
		}
		srv, err := etcdserver.Start(ctx, cfg)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(srv.Close)
		servers[name] = srv
		endpoints = append(endpoints, srv.Endpoint())
		if i == 0 {
			first = etcdClient(t, srv.Endpoint())
			continue
		}
		if err := etcdmember.Promote(ctx, first, peer); err != nil {
			t.Fatal(err)
		}
	}
	return servers, etcdClient(t, endpoints...)
}

// etcdClient returns a client of the etcd endpoints, closed in t.Cleanup.
func etcdClient(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// memberNames lists the names of etcd's members, sorted.
func memberNames(t *testing.T, etcd *clientv3.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := etcd.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range resp.Members {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}

// TestHostRemoveEtcdMember removes hosts of a cluster whose etcd has a
// member on each of the hosts host-a (up), host-b (its agent is down, its
// etcd member runs) and host-c (down, its member too), and the host worker
// (down, drained, no member); and the last member of a cluster of one.
func TestHostRemoveEtcdMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members")
	}
	t.Parallel()
	servers, cli := etcdCluster(t, "host-a", "host-b", "host-c")
	three := newAPI(t, func(c *controller.Config) { c.Etcd, c.HostRemoveWait = cli, time.Second })
	three.registerHosts(t, keyspace.Host{ID: "host-a", Addr: "127.0.0.9", Healthy: true, StartedAt: time.Now()})
	three.put(t, three.space.HostFlag("worker"), keyspace.HostFlags{Drain: true, DrainedAt: time.Now().UTC()})
	servers["host-c"].Close()
	// A cluster of one member, named as etcd's members were before
	// clusters had several hosts.
	one := newAPI(t)

	for _, tc := range []struct {
		name, host string
		a          *api
		removed    bool
		members    []string // etcd's members after the request
		err        *types.Error
		msg        string
	}{
		{name: "member that still runs", host: "host-b", a: three, members: []string{"host-a", "host-b", "host-c"},
			err: types.ErrConflict, msg: `the etcd member of host "host-b" still answers at http://127.0.0.1:`},
		{name: "member of a host that is down", host: "host-c", a: three, removed: true, members: []string{"host-a", "host-b"}},
		{name: "host that is no member", host: "worker", a: three, members: []string{"host-a", "host-b"}},
		{name: "member removed already", host: "host-c", a: three, members: []string{"host-a", "host-b"},
			err: types.ErrHostNotFound, msg: `no host "host-c" in the cluster`},
		{name: "host that is up", host: "host-a", a: three, members: []string{"host-a", "host-b"},
			err: types.ErrConflict, msg: `host "host-a" is up`},
		{name: "last member", host: "gantry", a: one, members: []string{"gantry"},
			err: types.ErrConflict, msg: `host "gantry" runs the last voting member of the cluster's etcd`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *types.HostRemoval
			var err error
			// etcd refuses to remove a member while it still counts it
			// as connected and the others have not been for a while: the
			// API answers 503 then, to be tried again.
			waitFor(t, "an answer other than 503", func() bool {
				r, err = tc.a.c.RemoveHost(t.Context(), tc.host)
				return !errors.Is(err, types.ErrUnavailable)
			})
			if tc.err != nil {
				wantAPIError(t, err, tc.err, tc.msg)
			} else if err != nil || !r.Done || r.EtcdMemberRemoved != tc.removed || (tc.removed && r.EtcdMembers != len(tc.members)) {
				t.Errorf("remove %s = %+v, %v; want done, etcd member removed %v, %d members", tc.host, r, err, tc.removed, len(tc.members))
			}
			if got := memberNames(t, tc.a.etcd); !slices.Equal(got, tc.members) {
				t.Errorf("etcd members %v, want %v", got, tc.members)
			}
		})
	}
	// The two members left are the quorum: writes go on.
	three.put(t, "/gantry-test/after-removal", "ok")
}
