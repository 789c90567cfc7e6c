package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
)

const testCluster = "c-sched"

var space = keyspace.MustNew(testCluster)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func etcdOrSkip(t *testing.T) *clientv3.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs embedded etcd")
	}
	return testenv.Etcd(t)
}

// runScheduler runs a scheduler until the test ends or stop is called;
// stop waits for Run to return and fails the test on an error.
func runScheduler(t *testing.T, etcd *clientv3.Client, id string, mod func(*Config)) (stop func()) {
	t.Helper()
	cfg := Config{
		Cluster: testCluster, Etcd: etcd, ID: id,
		Tick: 50 * time.Millisecond, HostGrace: time.Hour, RequestTimeout: 5 * time.Second,
		Logger: testLogger(t).With("scheduler", id),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run(%s) = %v", id, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run(%s) did not return", id)
		}
	}
	t.Cleanup(stop)
	return stop
}

func put(t *testing.T, etcd *clientv3.Client, key string, v any, opts ...clientv3.OpOption) {
	t.Helper()
	val, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := etcd.Put(ctx, key, string(val), opts...); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// registerHost writes a healthy host with 4 GiB under a lease of its own,
// as a host agent does, and returns the lease.
func registerHost(t *testing.T, etcd *clientv3.Client, id string) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	lease, err := etcd.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	put(t, etcd, space.Host(id), keyspace.Host{ID: id, Memory: 4 << 30, Healthy: true}, clientv3.WithLease(lease.ID))
	return lease.ID
}

func revoke(t *testing.T, etcd *clientv3.Client, lease clientv3.LeaseID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := etcd.Revoke(ctx, lease); err != nil {
		t.Fatalf("revoke lease: %v", err)
	}
}

func putFormation(t *testing.T, etcd *clientv3.Client, app, release string, version int, typ string, count int) {
	t.Helper()
	put(t, etcd, space.Formation(app, release, typ), keyspace.Formation{
		App: app, Release: release, Type: typ, Count: count,
		Template: keyspace.JobSpec{ReleaseVersion: version, Image: "img:" + release, Cmd: []string{"serve"}},
	})
}

func assignments(t *testing.T, etcd *clientv3.Client) []keyspace.Assignment {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, space.Assignments(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []keyspace.Assignment
	for _, kv := range resp.Kvs {
		var a keyspace.Assignment
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		if string(kv.Key) != space.Assignment(a.HostID, a.JobID) {
			t.Fatalf("assignment %+v under key %s", a, kv.Key)
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

func leaderID(t *testing.T, etcd *clientv3.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, space.Election(electionName)+"/", append(clientv3.WithFirstCreate(), clientv3.WithPrefix())...)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

// waitFor polls cond until it holds; it fails the test after 30 s with the
// last description cond gave.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; last state: %s", what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func describe(as []keyspace.Assignment) string {
	s := ""
	for _, a := range as {
		s += fmt.Sprintf("[%s %s/%s/%s.%d on %s restarts %d] ", a.JobID, a.Spec.App, a.Spec.Release, a.Spec.Type, a.Index, a.HostID, a.Restarts)
	}
	return s
}

func TestConfigValidate(t *testing.T) {
	etcd := &clientv3.Client{}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Cluster: "c1", Etcd: etcd, ID: "a"}, true},
		{"no cluster", Config{Etcd: etcd, ID: "a"}, false},
		{"bad cluster", Config{Cluster: "C/1", Etcd: etcd, ID: "a"}, false},
		{"no etcd", Config{Cluster: "c1", ID: "a"}, false},
		{"no id", Config{Cluster: "c1", Etcd: etcd}, false},
		{"negative tick", Config{Cluster: "c1", Etcd: etcd, ID: "a", Tick: -time.Second}, false},
		{"bad backoff", Config{Cluster: "c1", Etcd: etcd, ID: "a", Backoff: placement.Backoff{Base: time.Hour, Cap: time.Second}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v is not ErrInvalidConfig", err)
			}
		})
	}
	if err := Run(t.Context(), Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Run(zero config) = %v, want ErrInvalidConfig", err)
	}
}

// TestFormationToAssignments plays the controller and two host agents: a
// formation is placed, scaled down, has a job crash and is deleted.
func TestFormationToAssignments(t *testing.T) {
	etcd := etcdOrSkip(t)
	leaseA := registerHost(t, etcd, "host-a")
	registerHost(t, etcd, "host-b")
	runScheduler(t, etcd, "s1", nil)

	putFormation(t, etcd, "blog", "r1", 1, "web", 3)
	waitFor(t, "three jobs spread over both hosts", func() (bool, string) {
		as := assignments(t, etcd)
		per := map[string]int{}
		var idx []int
		for _, a := range as {
			per[a.HostID]++
			idx = append(idx, a.Index)
		}
		return len(as) == 3 && slices.Equal(idx, []int{1, 2, 3}) && per["host-a"] >= 1 && per["host-b"] >= 1, describe(as)
	})
	as := assignments(t, etcd)
	if a := as[0]; a.Spec.Image != "img:r1" || a.Spec.App != "blog" || a.Spec.Resources.Memory != placement.DefaultMemory {
		t.Errorf("assignment spec %+v", a.Spec)
	}

	putFormation(t, etcd, "blog", "r1", 1, "web", 1)
	waitFor(t, "scaled down to web.1", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 1 && as[0].Index == 1, describe(as)
	})

	// The host agent reports the job crashed: it is replaced at once with
	// the same index and one more restart.
	crashedJob := assignments(t, etcd)[0]
	hostLease := leaseA
	if crashedJob.HostID != "host-a" {
		hostLease = registerHost(t, etcd, crashedJob.HostID)
	}
	put(t, etcd, space.Job(crashedJob.JobID), keyspace.JobState{
		JobID: crashedJob.JobID, HostID: crashedJob.HostID, App: "blog", Release: "r1", Type: "web",
		State: keyspace.StateCrashed, StartedAt: time.Now(), UpdatedAt: time.Now(),
	}, clientv3.WithLease(hostLease))
	waitFor(t, "the crashed job replaced", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 1 && as[0].JobID != crashedJob.JobID && as[0].Index == 1 && as[0].Restarts == 1, describe(as)
	})

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := etcd.Delete(ctx, space.Formation("blog", "r1", "web")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all jobs of the deleted formation gone", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 0, describe(as)
	})
}

// TestOneOffNotReplaced plays the controller and a host agent: a one-off
// job and a service job crash together; the service job is replaced, the
// one-off job stays as it is until its owner removes its formation.
func TestOneOffNotReplaced(t *testing.T) {
	etcd := etcdOrSkip(t)
	lease := registerHost(t, etcd, "host-a")
	runScheduler(t, etcd, "s1", nil)

	putFormation(t, etcd, "blog", "r1", 1, "web", 1)
	put(t, etcd, space.Formation("blog", "r1", "build"), keyspace.Formation{
		App: "blog", Release: "r1", Type: "build", Count: 1,
		Template: keyspace.JobSpec{ReleaseVersion: 1, Image: "img:builder", OneOff: true},
	})
	byType := func(as []keyspace.Assignment) map[string]keyspace.Assignment {
		out := map[string]keyspace.Assignment{}
		for _, a := range as {
			out[a.Spec.Type] = a
		}
		return out
	}
	waitFor(t, "the build and the web job placed", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 2 && len(byType(as)) == 2, describe(as)
	})
	old := byType(assignments(t, etcd))
	if !old["build"].Spec.OneOff {
		t.Fatalf("build assignment %+v is not one-off", old["build"])
	}

	// One transaction: the plan that replaces the web job has seen the
	// build job crashed too.
	var ops []clientv3.Op
	for _, a := range old {
		val, err := json.Marshal(keyspace.JobState{
			JobID: a.JobID, HostID: a.HostID, App: a.Spec.App, Release: a.Spec.Release, Type: a.Spec.Type,
			State: keyspace.StateCrashed, StartedAt: time.Now(), UpdatedAt: time.Now(),
		})
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(space.Job(a.JobID), string(val), clientv3.WithLease(lease)))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the web job replaced", func() (bool, string) {
		as := assignments(t, etcd)
		web, ok := byType(as)["web"]
		return ok && web.JobID != old["web"].JobID, describe(as)
	})
	as := assignments(t, etcd)
	if len(as) != 2 || byType(as)["build"].JobID != old["build"].JobID {
		t.Fatalf("after the crash: %s; want the crashed build job left as it was", describe(as))
	}

	if _, err := etcd.Delete(ctx, space.Formation("blog", "r1", "build")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the build job gone with its formation", func() (bool, string) {
		as := assignments(t, etcd)
		_, ok := byType(as)["build"]
		return len(as) == 1 && !ok, describe(as)
	})
}

// TestLostHostJobsMove: a host whose lease ends has its jobs placed on the
// other host after the grace.
func TestLostHostJobsMove(t *testing.T) {
	etcd := etcdOrSkip(t)
	registerHost(t, etcd, "host-a")
	leaseB := registerHost(t, etcd, "host-b")
	runScheduler(t, etcd, "s1", func(c *Config) { c.HostGrace = 300 * time.Millisecond })

	putFormation(t, etcd, "blog", "r1", 1, "web", 2)
	waitFor(t, "one job per host", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 2 && as[0].HostID != as[1].HostID, describe(as)
	})
	var moved keyspace.Assignment
	for _, a := range assignments(t, etcd) {
		if a.HostID == "host-b" {
			moved = a
		}
	}
	revoke(t, etcd, leaseB)
	waitFor(t, "host-b's job on host-a with the same index", func() (bool, string) {
		as := assignments(t, etcd)
		ok := len(as) == 2
		for _, a := range as {
			ok = ok && a.HostID == "host-a" && a.JobID != moved.JobID
		}
		return ok && as[0].Index == 1 && as[1].Index == 2, describe(as)
	})
}

// TestNewLeaderGivesHostsGrace: a scheduler that starts while a host is
// away (a restart of the whole node) leaves that host's jobs alone.
func TestNewLeaderGivesHostsGrace(t *testing.T) {
	etcd := etcdOrSkip(t)
	registerHost(t, etcd, "host-a")
	old := keyspace.Assignment{
		JobID: "blog.web.1.000000000000", HostID: "host-away", Index: 1, CreatedAt: time.Now().Add(-time.Hour),
		Spec: keyspace.JobSpec{App: "blog", Release: "r1", ReleaseVersion: 1, Type: "web", Image: "img:r1"},
	}
	put(t, etcd, space.Assignment(old.HostID, old.JobID), old)
	putFormation(t, etcd, "blog", "r1", 1, "web", 1)
	runScheduler(t, etcd, "s1", func(c *Config) { c.HostGrace = time.Hour })

	// Another formation being placed shows the leader has planned.
	putFormation(t, etcd, "shop", "r1", 1, "web", 1)
	waitFor(t, "the shop job placed", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 2, describe(as)
	})
	as := assignments(t, etcd)
	if !slices.ContainsFunc(as, func(a keyspace.Assignment) bool { return a.JobID == old.JobID && a.HostID == "host-away" }) {
		t.Errorf("the away host's job moved: %s", describe(as))
	}
}

// TestStandbyTakesOver: the second scheduler waits, then leads once the
// first one's context ends, and converges.
func TestStandbyTakesOver(t *testing.T) {
	etcd := etcdOrSkip(t)
	registerHost(t, etcd, "host-a")
	stopFirst := runScheduler(t, etcd, "first", nil)
	waitFor(t, "first leading", func() (bool, string) { id := leaderID(t, etcd); return id == "first", id })
	runScheduler(t, etcd, "second", nil)

	putFormation(t, etcd, "blog", "r1", 1, "web", 1)
	waitFor(t, "the job placed by the first leader", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 1, describe(as)
	})
	if id := leaderID(t, etcd); id != "first" {
		t.Fatalf("leader %q, want first", id)
	}

	stopFirst()
	waitFor(t, "second leading", func() (bool, string) { id := leaderID(t, etcd); return id == "second", id })
	putFormation(t, etcd, "blog", "r1", 1, "web", 2)
	waitFor(t, "the second job placed by the new leader", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 2, describe(as)
	})
}

// TestDeposedLeaderWritesRefused: once a leader's election key is gone, its
// guarded writes fail and change nothing, even after another leader was
// elected.
func TestDeposedLeaderWritesRefused(t *testing.T) {
	etcd := etcdOrSkip(t)
	ctx := t.Context()
	session, err := concurrency.NewSession(etcd, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	defer session.Orphan()
	election := concurrency.NewElection(session, space.Election(electionName))
	if err := election.Campaign(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	g := guard{key: election.Key(), rev: election.Rev()}
	plan := func(job string) placement.Plan {
		return placement.Plan{Start: []placement.Start{{Assignment: keyspace.Assignment{JobID: job, HostID: "host-a", Index: 1}}}}
	}
	if err := apply(ctx, etcd, space, g, plan("while-leading"), 5*time.Second); err != nil {
		t.Fatalf("write while leading: %v", err)
	}

	revoke(t, etcd, session.Lease()) // the lease expires: the term is over
	runScheduler(t, etcd, "new", nil)
	waitFor(t, "new leading", func() (bool, string) { id := leaderID(t, etcd); return id == "new", id })

	err = apply(ctx, etcd, space, g, plan("after-deposed"), 5*time.Second)
	if !errors.Is(err, errNotLeader) {
		t.Fatalf("write after being deposed = %v, want errNotLeader", err)
	}
	for _, a := range assignments(t, etcd) {
		if a.JobID == "after-deposed" {
			t.Fatalf("the deposed leader's write went through")
		}
	}
}

// TestLeaderLosesLease: a leader whose election lease is revoked under it
// notices, campaigns again and goes on converging.
func TestLeaderLosesLease(t *testing.T) {
	etcd := etcdOrSkip(t)
	registerHost(t, etcd, "host-a")
	runScheduler(t, etcd, "s1", nil)
	waitFor(t, "s1 leading", func() (bool, string) { id := leaderID(t, etcd); return id == "s1", id })

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, space.Election(electionName)+"/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("election keys: %v %v", resp, err)
	}
	firstKey := string(resp.Kvs[0].Key)
	revoke(t, etcd, clientv3.LeaseID(resp.Kvs[0].Lease))

	waitFor(t, "s1 leading again under a new key", func() (bool, string) {
		resp, err := etcd.Get(ctx, space.Election(electionName)+"/", clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 1 {
			return false, fmt.Sprint(resp, err)
		}
		return string(resp.Kvs[0].Key) != firstKey && string(resp.Kvs[0].Value) == "s1", string(resp.Kvs[0].Key)
	})
	putFormation(t, etcd, "blog", "r1", 1, "web", 1)
	waitFor(t, "the job placed", func() (bool, string) {
		as := assignments(t, etcd)
		return len(as) == 1, describe(as)
	})
}

// playAgents plays the host agents of hosts (ID to lease) until the test
// ends: a job assigned to one of them starts (state starting) and is up on
// the next round; the state of a job whose assignment is gone is removed.
func playAgents(t *testing.T, etcd *clientv3.Client, hosts map[string]clientv3.LeaseID) {
	t.Helper()
	ctx := t.Context()
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	round := func() error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := etcd.Txn(rctx).Then(
			clientv3.OpGet(space.Assignments(), clientv3.WithPrefix()),
			clientv3.OpGet(space.Jobs(), clientv3.WithPrefix()),
		).Commit()
		if err != nil {
			return err
		}
		states := map[string]keyspace.JobState{}
		for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
			var st keyspace.JobState
			if err := json.Unmarshal(kv.Value, &st); err != nil {
				return fmt.Errorf("%s: %w", kv.Key, err)
			}
			states[st.JobID] = st
		}
		var ops []clientv3.Op
		for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
			var a keyspace.Assignment
			if err := json.Unmarshal(kv.Value, &a); err != nil {
				return fmt.Errorf("%s: %w", kv.Key, err)
			}
			lease, ok := hosts[a.HostID]
			if !ok {
				continue
			}
			st, ok := states[a.JobID]
			delete(states, a.JobID)
			switch {
			case !ok:
				st = keyspace.JobState{JobID: a.JobID, HostID: a.HostID, App: a.Spec.App, Release: a.Spec.Release,
					Type: a.Spec.Type, State: keyspace.StateStarting, StartedAt: time.Now(), UpdatedAt: time.Now()}
			case st.State == keyspace.StateStarting:
				st.State, st.UpdatedAt = keyspace.StateUp, time.Now()
			default:
				continue
			}
			val, err := json.Marshal(st)
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(space.Job(a.JobID), string(val), clientv3.WithLease(lease)))
		}
		for id, st := range states {
			if _, ok := hosts[st.HostID]; ok {
				ops = append(ops, clientv3.OpDelete(space.Job(id)))
			}
		}
		if len(ops) > 0 {
			_, err = etcd.Txn(rctx).Then(ops...).Commit()
		}
		return err
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := round(); err != nil && ctx.Err() == nil {
				t.Errorf("host agents: %v", err)
				return
			}
		}
	}()
}

// jobStates returns the job states by job ID.
func jobStates(t *testing.T, etcd *clientv3.Client) map[string]keyspace.JobState {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, space.Jobs(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]keyspace.JobState{}
	for _, kv := range resp.Kvs {
		var st keyspace.JobState
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			t.Fatalf("%s: %v", kv.Key, err)
		}
		out[st.JobID] = st
	}
	return out
}

// TestRollingRestart plays the controller and two host agents: a formation
// of two jobs that are up gets a RestartedAt; its jobs roll over to two new
// ones, and at no revision of etcd in between are fewer than two of its
// jobs up or more than three assigned.
func TestRollingRestart(t *testing.T) {
	etcd := etcdOrSkip(t)
	hosts := map[string]clientv3.LeaseID{"host-a": registerHost(t, etcd, "host-a"), "host-b": registerHost(t, etcd, "host-b")}
	playAgents(t, etcd, hosts)
	runScheduler(t, etcd, "s1", nil)

	f := keyspace.Formation{
		App: "blog", Release: "r1", Type: "web", Count: 2,
		Template: keyspace.JobSpec{ReleaseVersion: 1, Image: "img:r1"},
	}
	put(t, etcd, space.Formation(f.App, f.Release, f.Type), f)
	allUp := func(as []keyspace.Assignment) (bool, string) {
		states := jobStates(t, etcd)
		up := 0
		for _, a := range as {
			if states[a.JobID].State == keyspace.StateUp {
				up++
			}
		}
		return len(as) == 2 && up == 2, describe(as)
	}
	waitFor(t, "two jobs up", func() (bool, string) { return allUp(assignments(t, etcd)) })
	old := assignments(t, etcd)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	before, err := etcd.Get(ctx, space.Root(), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	f.RestartedAt = time.Now().UTC()
	put(t, etcd, space.Formation(f.App, f.Release, f.Type), f)

	waitFor(t, "two new jobs up", func() (bool, string) {
		as := assignments(t, etcd)
		for _, a := range as {
			if a.JobID == old[0].JobID || a.JobID == old[1].JobID {
				return false, describe(as)
			}
		}
		return allUp(as)
	})
	as := assignments(t, etcd)
	if as[0].Index != 1 || as[1].Index != 2 || as[0].HostID == as[1].HostID {
		t.Errorf("after the restart: %s; want web.1 and web.2 on two hosts", describe(as))
	}
	for i, a := range as {
		if a.Index != old[i].Index || a.CreatedAt.Before(f.RestartedAt) {
			t.Errorf("job %s of index %d created %s, restarted at %s", a.JobID, a.Index, a.CreatedAt, f.RestartedAt)
		}
	}
	checkRevisions(t, etcd, before)
}

// checkRevisions replays every change under the cluster's root from the
// revision of before to now and fails the test at any revision where fewer
// than two assigned jobs are up or more than three are assigned.
func checkRevisions(t *testing.T, etcd *clientv3.Client, before *clientv3.GetResponse) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	now, err := etcd.Get(ctx, space.Root(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	end := now.Header.Revision
	state := map[string][]byte{}
	for _, kv := range before.Kvs {
		state[string(kv.Key)] = kv.Value
	}
	check := func(rev int64) {
		up, assigned := 0, 0
		for k := range state {
			if !strings.HasPrefix(k, space.Assignments()) {
				continue
			}
			assigned++
			var st keyspace.JobState
			if raw, ok := state[space.Job(keyspace.Last(k))]; ok && json.Unmarshal(raw, &st) == nil && st.State == keyspace.StateUp {
				up++
			}
		}
		if up < 2 || assigned > 3 {
			t.Errorf("revision %d: %d jobs assigned, %d up", rev, assigned, up)
		}
	}
	check(before.Header.Revision)
	wch := etcd.Watch(ctx, space.Root(), clientv3.WithPrefix(), clientv3.WithRev(before.Header.Revision+1))
	rev := before.Header.Revision
	for rev < end {
		wr, ok := <-wch
		if !ok {
			t.Fatalf("watch ended at revision %d of %d: %v", rev, end, ctx.Err())
		}
		if err := wr.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision > end {
				break
			}
			if ev.Kv.ModRevision != rev {
				check(rev)
				rev = ev.Kv.ModRevision
			}
			if ev.Type == clientv3.EventTypeDelete {
				delete(state, string(ev.Kv.Key))
			} else {
				state[string(ev.Kv.Key)] = ev.Kv.Value
			}
		}
	}
	check(rev)
}
