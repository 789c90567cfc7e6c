package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// jobBehaviour says what the state of the new job index of type typ of
// release version is, as its host would report it.
type jobBehaviour func(version int, typ string, index int) keyspace.JobState

// allUp makes every job up.
func allUp(int, string, int) keyspace.JobState { return keyspace.JobState{State: keyspace.StateUp} }

// fakeHosts plays the scheduler and the host agents of app until the test
// ends: every formation in etcd gets its count of jobs (IDs
// <app>.<type>.<index>.<version as 12 hex digits>), in the state that
// behave says (re-read at each pass, so it may change), and the jobs that
// no formation asks for any more are removed.
func (a *api) fakeHosts(t *testing.T, app string, behave func() jobBehaviour) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			a.fakeHostsPass(ctx, app, behave())
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// fakeHostsPass makes the job states of app match its formations once.
// Errors are left to the next pass.
func (a *api) fakeHostsPass(ctx context.Context, app string, behave jobBehaviour) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	fs, err := a.etcd.Get(ctx, a.space.AppFormations(app), clientv3.WithPrefix())
	if err != nil {
		return
	}
	js, err := a.etcd.Get(ctx, a.space.Job(app+"."), clientv3.WithPrefix())
	if err != nil {
		return
	}
	have := map[string]keyspace.JobState{}
	for _, kv := range js.Kvs {
		var st keyspace.JobState
		if json.Unmarshal(kv.Value, &st) == nil {
			have[st.JobID] = st
		}
	}
	want := map[string]bool{}
	for _, kv := range fs.Kvs {
		var f keyspace.Formation
		if json.Unmarshal(kv.Value, &f) != nil {
			continue
		}
		for i := 1; i <= f.Count; i++ {
			id := fmt.Sprintf("%s.%s.%d.%012x", app, f.Type, i, f.Template.ReleaseVersion)
			want[id] = true
			st := behave(f.Template.ReleaseVersion, f.Type, i)
			if cur, ok := have[id]; ok && cur.State == st.State {
				continue
			}
			st.JobID, st.HostID, st.App, st.Release, st.Type = id, "host-1", app, f.Release, f.Type
			st.StartedAt, st.UpdatedAt = time.Now().UTC(), time.Now().UTC()
			b, _ := json.Marshal(st)
			if _, err := a.etcd.Put(ctx, a.space.Job(id), string(b)); err != nil {
				return
			}
		}
	}
	for id := range have {
		if !want[id] {
			if _, err := a.etcd.Delete(ctx, a.space.Job(id)); err != nil {
				return
			}
		}
	}
}

// countsRecorder records the etcd counts of one process type of an app,
// by release version, at every revision that changes them.
type countsRecorder struct {
	mu   sync.Mutex
	seen []map[int]int
}

// recordCounts starts recording the counts of type typ of app until the
// test ends.
func (a *api) recordCounts(t *testing.T, app, typ string) *countsRecorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := a.etcd.Get(t.Context(), a.space.AppFormations(app), clientv3.WithPrefix())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rec := &countsRecorder{}
	cur := map[string]keyspace.Formation{}
	for _, kv := range resp.Kvs {
		var f keyspace.Formation
		if json.Unmarshal(kv.Value, &f) == nil {
			cur[string(kv.Key)] = f
		}
	}
	snapshot := func() {
		m := map[int]int{}
		for _, f := range cur {
			if f.Type == typ {
				m[f.Template.ReleaseVersion] = f.Count
			}
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if n := len(rec.seen); n == 0 || !maps.Equal(rec.seen[n-1], m) {
			rec.seen = append(rec.seen, m)
		}
	}
	snapshot()
	wch := a.etcd.Watch(ctx, a.space.AppFormations(app), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(cur, string(ev.Kv.Key))
					continue
				}
				var f keyspace.Formation
				if json.Unmarshal(ev.Kv.Value, &f) == nil {
					cur[string(ev.Kv.Key)] = f
				}
			}
			snapshot()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return rec
}

// steps returns the recorded counts as [old, new] pairs of releases old
// and new.
// stepsUntil waits until the recorded steps end with last (the watch that
// records them may lag behind a direct read of etcd), and returns them.
func (r *countsRecorder) stepsUntil(t *testing.T, old, new int, last [2]int) [][2]int {
	t.Helper()
	var got [][2]int
	waitFor(t, fmt.Sprintf("the recorded counts to reach %v", last), func() bool {
		got = r.steps(old, new)
		return len(got) > 0 && got[len(got)-1] == last
	})
	return got
}

func (r *countsRecorder) steps(old, new int) [][2]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][2]int
	for _, m := range r.seen {
		p := [2]int{m[old], m[new]}
		if len(out) == 0 || out[len(out)-1] != p {
			out = append(out, p)
		}
	}
	return out
}

// eventLog collects the platform events of the apps.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) Event(app, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, app+": "+msg)
}

func (l *eventLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// waitState waits until the deployment of release version of app is in
// state.
func (a *api) waitState(t *testing.T, app string, version int, state string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("v%d's deployment to be %s", version, state), func() bool {
		st, _ := a.deployment(t, app, version)
		return st == state
	})
}

// deployedApp makes app with release v1 of web scaled to web, up on
// fakeHosts that behave as behave says.
func deployedApp(t *testing.T, a *api, app string, web int, behave func() jobBehaviour) *types.Release {
	t.Helper()
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, app); err != nil {
		t.Fatal(err)
	}
	v1, err := a.c.CreateRelease(ctx, app, webRelease("demo:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Scale(ctx, app, map[string]int{"web": web}); err != nil {
		t.Fatal(err)
	}
	a.fakeHosts(t, app, behave)
	a.waitState(t, app, 1, types.DeployComplete)
	return v1
}

func TestDeployOneByOne(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	a := newAPI(t, func(c *controller.Config) { c.Events = events })
	ctx := t.Context()
	deployedApp(t, a, "demo", 3, func() jobBehaviour { return allUp })
	rec := a.recordCounts(t, "demo", "web")

	v2, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v2"))
	if err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "demo", 2, types.DeployComplete)
	waitFor(t, "only v2 in etcd", func() bool { return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v2/web": 3}) })
	if app, _ := a.c.GetApp(ctx, "demo"); app.Release != 2 {
		t.Errorf("current release = %d, want 2", app.Release)
	}
	// A new job, up, then an old one goes: never fewer than 3 jobs asked
	// for, never more than 4.
	want := [][2]int{{3, 0}, {3, 1}, {2, 1}, {2, 2}, {1, 2}, {1, 3}, {0, 3}}
	if got := rec.stepsUntil(t, 1, 2, want[len(want)-1]); !slices.Equal(got, want) {
		t.Errorf("v1, v2 web counts in etcd = %v, want %v", got, want)
	}
	deps, err := a.c.ListDeployments(ctx, "demo")
	if err != nil || len(deps) != 2 {
		t.Fatalf("ListDeployments = %+v, %v", deps, err)
	}
	d := deps[0]
	if d.NewRelease != v2.Version || d.OldRelease != 1 || d.Strategy != types.StrategyOneByOne || d.State != types.DeployComplete ||
		d.Progress() != "web 3/3" || d.Timeout != 120 || d.StartedAt.IsZero() || d.FinishedAt.IsZero() || d.Reason != "" {
		t.Errorf("deployment of v2 = %+v", d)
	}
	if got, err := a.c.GetDeployment(ctx, "demo", d.ID); err != nil || got.ID != d.ID || got.State != d.State {
		t.Errorf("GetDeployment = %+v, %v", got, err)
	}
	waitFor(t, "the events of v2", func() bool {
		return slices.Contains(events.list(), "demo: deployed v2")
	})
	if ev := events.list(); !slices.Contains(ev, "demo: deploying v2 (one-by-one)") {
		t.Errorf("events = %q", ev)
	}
}

func TestDeployAllAtOnce(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	deployedApp(t, a, "demo", 2, func() jobBehaviour { return allUp })
	strategy := types.StrategyAllAtOnce
	if st, err := a.c.UpdateDeploySettings(ctx, "demo", types.DeploySettingsRequest{Strategy: &strategy}); err != nil || st.Strategy != strategy {
		t.Fatalf("UpdateDeploySettings = %+v, %v", st, err)
	}
	rec := a.recordCounts(t, "demo", "web")
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v2")); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "demo", 2, types.DeployComplete)
	waitFor(t, "only v2 in etcd", func() bool { return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v2/web": 2}) })
	want := [][2]int{{2, 0}, {2, 2}, {0, 2}}
	if got := rec.stepsUntil(t, 1, 2, want[len(want)-1]); !slices.Equal(got, want) {
		t.Errorf("v1, v2 web counts in etcd = %v, want %v", got, want)
	}
}

func TestDeployCrashRollsBack(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	a := newAPI(t, func(c *controller.Config) { c.Events = events })
	ctx := t.Context()
	exit := 1
	// v2's second job crashes: by then v1 is down to one job.
	behave := func(version int, typ string, index int) keyspace.JobState {
		if version == 2 && index == 2 {
			return keyspace.JobState{State: keyspace.StateCrashed, ExitCode: &exit, LastLines: []string{"starting", "panic: no DATABASE_URL"}}
		}
		return keyspace.JobState{State: keyspace.StateUp}
	}
	deployedApp(t, a, "demo", 2, func() jobBehaviour { return behave })
	rec := a.recordCounts(t, "demo", "web")
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v2")); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "demo", 2, types.DeployRolledBack)
	waitFor(t, "only v1 in etcd", func() bool { return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v1/web": 2}) })
	// v1 is back at 2 jobs before v2's go.
	want := [][2]int{{2, 0}, {2, 1}, {1, 1}, {1, 2}, {2, 2}, {2, 0}}
	if got := rec.stepsUntil(t, 1, 2, want[len(want)-1]); !slices.Equal(got, want) {
		t.Errorf("v1, v2 web counts in etcd = %v, want %v", got, want)
	}
	if app, _ := a.c.GetApp(ctx, "demo"); app.Release != 1 {
		t.Errorf("current release = %d, want 1", app.Release)
	}
	deps, err := a.c.ListDeployments(ctx, "demo")
	if err != nil || len(deps) != 2 {
		t.Fatalf("ListDeployments = %+v, %v", deps, err)
	}
	d := deps[0]
	if d.State != types.DeployRolledBack || d.Reason != "v2 did not come up: web.2 (demo.web.2.000000000002) crashed: exit status 1" ||
		d.FailedJob != "demo.web.2.000000000002" || !slices.Equal(d.LastLines, []string{"starting", "panic: no DATABASE_URL"}) {
		t.Errorf("deployment of v2 = %+v", d)
	}
	if s := d.Status(); !strings.HasPrefix(s, "Deploy of v2 failed: v2 did not come up: web.2") || !strings.HasSuffix(s, "; v1 keeps running") {
		t.Errorf("Status() = %q", s)
	}
	waitFor(t, "the events of the rollback", func() bool { return slices.Contains(events.list(), "demo: rolled back to v1") })
	if ev := events.list(); !slices.ContainsFunc(ev, func(e string) bool { return strings.HasPrefix(e, "demo: deploy of v2 failed, rolling back to v1: ") }) {
		t.Errorf("events = %q", ev)
	}
	// A first release that crashes has nothing to fall back to: it fails
	// and stays current.
	if _, err := a.c.CreateApp(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	a.fakeHosts(t, "first", func() jobBehaviour {
		return func(int, string, int) keyspace.JobState {
			return keyspace.JobState{State: keyspace.StateCrashed, Error: "image not found: missing:v1"}
		}
	})
	if _, err := a.c.CreateRelease(ctx, "first", webRelease("missing:v1")); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "first", 1, types.DeployFailed)
	if _, reason := a.deployment(t, "first", 1); reason != "v1 did not come up: web.1 (first.web.1.000000000001) crashed: image not found: missing:v1" {
		t.Errorf("reason = %q", reason)
	}
	if app, _ := a.c.GetApp(ctx, "first"); app.Release != 1 {
		t.Errorf("current release of first = %d, want 1", app.Release)
	}
}

func TestDeployTimeout(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	// v2's jobs run but never pass their health check.
	behave := func(version int, typ string, index int) keyspace.JobState {
		if version == 2 {
			return keyspace.JobState{State: keyspace.StateStarting}
		}
		return keyspace.JobState{State: keyspace.StateUp}
	}
	deployedApp(t, a, "demo", 1, func() jobBehaviour { return behave })
	timeout := 1
	if st, err := a.c.UpdateDeploySettings(ctx, "demo", types.DeploySettingsRequest{Timeout: &timeout}); err != nil || st.Timeout != 1 || st.TimeoutDefault {
		t.Fatalf("UpdateDeploySettings = %+v, %v", st, err)
	}
	rec := a.recordCounts(t, "demo", "web")
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v2")); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "demo", 2, types.DeployRolledBack)
	waitFor(t, "only v1 in etcd", func() bool { return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v1/web": 1}) })
	want := [][2]int{{1, 0}, {1, 1}, {1, 0}}
	if got := rec.stepsUntil(t, 1, 2, want[len(want)-1]); !slices.Equal(got, want) {
		t.Errorf("v1, v2 web counts in etcd = %v, want %v", got, want)
	}
	_, reason := a.deployment(t, "demo", 2)
	if !strings.Contains(reason, "v2 did not come up within 1s: web (demo.web.1.000000000002) runs, but nothing answered on $PORT (8080)") {
		t.Errorf("reason = %q", reason)
	}
	if rels, _ := a.c.ListReleases(ctx, "demo"); len(rels) != 2 {
		t.Errorf("releases = %d, want 2", len(rels))
	}
	if app, _ := a.c.GetApp(ctx, "demo"); app.Release != 1 {
		t.Errorf("current release = %d, want 1", app.Release)
	}
}

func TestDeployPending(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	var v2Up atomic.Bool
	behave := func(version int, typ string, index int) keyspace.JobState {
		if version == 2 && !v2Up.Load() {
			return keyspace.JobState{State: keyspace.StateStarting}
		}
		return keyspace.JobState{State: keyspace.StateUp}
	}
	deployedApp(t, a, "demo", 1, func() jobBehaviour { return behave })
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v2")); err != nil {
		t.Fatal(err)
	}
	// v3 waits for v2; v4 replaces it while it waits.
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v3")); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.deployment(t, "demo", 3); st != types.DeployPending {
		t.Errorf("v3's deployment is %s, want pending", st)
	}
	v4, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v4"))
	if err != nil {
		t.Fatal(err)
	}
	for version, want := range map[int]string{2: types.DeployRunning, 3: types.DeploySuperseded, 4: types.DeployPending} {
		if st, _ := a.deployment(t, "demo", version); st != want {
			t.Errorf("v%d's deployment is %s, want %s", version, st, want)
		}
	}
	// Scaling applies to the release the app moves to, v4, and to the
	// others; a pending release runs nothing.
	if f, err := a.c.Scale(ctx, "demo", map[string]int{"web": 2}); err != nil || f.Release != 4 || f.Processes["web"] != 2 {
		t.Errorf("Scale = %+v, %v; want v4 web=2", f, err)
	}
	for k := range a.formations(t, "demo") {
		if strings.HasPrefix(k, "v3/") || strings.HasPrefix(k, "v4/") {
			t.Errorf("etcd has %s while v4 waits", k)
		}
	}
	v2Up.Store(true)
	a.waitState(t, "demo", 2, types.DeployComplete)
	a.waitState(t, "demo", 4, types.DeployComplete)
	waitFor(t, "only v4 in etcd", func() bool { return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v4/web": 2}) })
	if app, _ := a.c.GetApp(ctx, "demo"); app.Release != v4.Version {
		t.Errorf("current release = %d, want 4", app.Release)
	}
	deps, err := a.c.ListDeployments(ctx, "demo")
	if err != nil || len(deps) != 4 {
		t.Fatalf("ListDeployments = %+v, %v", deps, err)
	}
	var states []string
	for _, d := range deps {
		states = append(states, fmt.Sprintf("v%d %s", d.NewRelease, d.State))
	}
	if want := []string{"v4 complete", "v3 superseded", "v2 complete", "v1 complete"}; !slices.Equal(states, want) {
		t.Errorf("deployments = %q, want %q", states, want)
	}
	if deps[0].OldRelease != 2 {
		t.Errorf("v4 deployed from v%d, want v2", deps[0].OldRelease)
	}
}

// startServer serves a controller on dbURL (migrated) and etcd until stop
// is called or the test ends.
func startServer(t *testing.T, dbURL string, etcd *clientv3.Client) (c *client.Client, stop func()) {
	t.Helper()
	token, err := controller.CreateAdminToken(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dbURL, etcd, &syncBuffer{})
	cfg.InternalURL = "http://" + ln.Addr().String()
	srv, err := controller.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			srv.Close()
		})
	}
	t.Cleanup(stop)
	return client.New("http://"+ln.Addr().String(), token), stop
}

func TestDeployResumesAfterRestart(t *testing.T) {
	t.Parallel()
	db := testenv.NewDatabase(t)
	etcd := testenv.Etcd(t)
	if err := controller.Migrate(t.Context(), db, nil); err != nil {
		t.Fatal(err)
	}
	first, stopFirst := startServer(t, db, etcd)
	a := &api{c: first, db: db, etcd: etcd, space: keyspace.MustNew("c-test")}
	ctx := t.Context()
	// v2's jobs above index limit do not come up until the limit rises.
	var limit atomic.Int32
	limit.Store(3)
	behave := func(version int, typ string, index int) keyspace.JobState {
		if version == 2 && index > int(limit.Load()) {
			return keyspace.JobState{State: keyspace.StateStarting}
		}
		return keyspace.JobState{State: keyspace.StateUp}
	}
	deployedApp(t, a, "demo", 3, func() jobBehaviour { return behave })
	rec := a.recordCounts(t, "demo", "web")
	limit.Store(1)
	if _, err := first.CreateRelease(ctx, "demo", webRelease("demo:v2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v1 and v2 at 2 jobs each", func() bool {
		return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v1/web": 2, "v2/web": 2})
	})
	stopFirst()

	// A new controller on the same PostgreSQL and etcd resumes the
	// deployment where it was.
	second, _ := startServer(t, db, etcd)
	a.c = second
	if c := counts(a.formations(t, "demo")); !maps.Equal(c, map[string]int{"v1/web": 2, "v2/web": 2}) {
		t.Errorf("etcd after the restart = %v, want the step it was at", c)
	}
	limit.Store(3)
	a.waitState(t, "demo", 2, types.DeployComplete)
	waitFor(t, "only v2 in etcd", func() bool { return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v2/web": 3}) })
	want := [][2]int{{3, 0}, {3, 1}, {2, 1}, {2, 2}, {1, 2}, {1, 3}, {0, 3}}
	if got := rec.stepsUntil(t, 1, 2, want[len(want)-1]); !slices.Equal(got, want) {
		t.Errorf("v1, v2 web counts in etcd = %v, want %v", got, want)
	}
	if app, err := second.GetApp(ctx, "demo"); err != nil || app.Release != 2 {
		t.Errorf("GetApp = %+v, %v; want release 2", app, err)
	}
}

func TestDeploymentEvents(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	deployedApp(t, a, "demo", 2, func() jobBehaviour { return allUp })

	_, id, err := a.c.UpdateConfigDeployment(ctx, "demo", map[string]*string{"GREETING": ptr("hi")})
	if err != nil || id == "" {
		t.Fatalf("UpdateConfigDeployment: deployment %q, %v", id, err)
	}
	var seen []types.Deployment
	final, err := a.c.FollowDeployment(ctx, "demo", id, func(d types.Deployment) { seen = append(seen, d) })
	if err != nil {
		t.Fatal(err)
	}
	if final.ID != id || final.State != types.DeployComplete || final.NewRelease != 2 || final.Progress() != "web 2/2" {
		t.Errorf("final deployment = %+v", final)
	}
	if len(seen) < 2 || seen[0].ID != id || seen[len(seen)-1].State != types.DeployComplete {
		t.Fatalf("events = %+v", seen)
	}
	for _, d := range seen[:len(seen)-1] {
		if d.State != types.DeployRunning || !strings.HasPrefix(d.Status(), "Deploying v2 (one-by-one): web ") {
			t.Errorf("progress event %+v (%q)", d, d.Status())
		}
	}

	// A deployment that has ended gets its last event only.
	resp, body := a.raw(t, "GET", "/v1/apps/demo/deployments/"+id+"/events", "", "Bearer "+a.token)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, ct)
	}
	if !strings.HasPrefix(string(body), "id: 1\nevent: end\ndata: {\"id\":\""+id+"\"") || !strings.HasSuffix(string(body), "}\n\n") ||
		strings.Count(string(body), "event: ") != 1 {
		t.Errorf("events of an ended deployment:\n%s", body)
	}
	// The endpoints that make releases name their deployment.
	resp, _ = a.raw(t, "POST", "/v1/apps/demo/rollback", `{"version": 1}`, "Bearer "+a.token)
	if resp.StatusCode != 201 || resp.Header.Get(types.DeploymentHeader) == "" {
		t.Errorf("rollback: %d, deployment %q", resp.StatusCode, resp.Header.Get(types.DeploymentHeader))
	}
	_, id, err = a.c.CreateReleaseDeployment(ctx, "demo", webRelease("demo:v4"))
	if err != nil || id == "" {
		t.Errorf("CreateReleaseDeployment: deployment %q, %v", id, err)
	}
	if _, none, err := a.c.UpdateConfigDeployment(ctx, "demo", map[string]*string{"NOT_SET": nil}); err != nil || none != "" {
		t.Errorf("a config change that changes nothing: deployment %q, %v", none, err)
	}
}

func TestDeploySettings(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(c *controller.Config) { c.DeployTimeout = 90 * time.Second })
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	st, err := a.c.GetDeploySettings(ctx, "demo")
	if err != nil || *st != (types.DeploySettings{App: "demo", Strategy: "one-by-one", Timeout: 90, TimeoutDefault: true}) {
		t.Errorf("GetDeploySettings = %+v, %v", st, err)
	}
	steps := []struct {
		name string
		req  types.DeploySettingsRequest
		want types.DeploySettings
	}{
		{"strategy", types.DeploySettingsRequest{Strategy: ptr("all-at-once")}, types.DeploySettings{App: "demo", Strategy: "all-at-once", Timeout: 90, TimeoutDefault: true}},
		{"timeout", types.DeploySettingsRequest{Timeout: intPtr(300)}, types.DeploySettings{App: "demo", Strategy: "all-at-once", Timeout: 300}},
		{"nothing", types.DeploySettingsRequest{}, types.DeploySettings{App: "demo", Strategy: "all-at-once", Timeout: 300}},
		{"back to the default", types.DeploySettingsRequest{Strategy: ptr("one-by-one"), Timeout: intPtr(0)}, types.DeploySettings{App: "demo", Strategy: "one-by-one", Timeout: 90, TimeoutDefault: true}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			got, err := a.c.UpdateDeploySettings(ctx, "demo", s.req)
			if err != nil || *got != s.want {
				t.Errorf("UpdateDeploySettings = %+v, %v; want %+v", got, err, s.want)
			}
		})
	}
	const p = "/v1/apps/demo/deploy"
	a.runRaw(t, []rawCase{
		{"unknown strategy", "PATCH", p, `{"strategy": "fast"}`, 422, "invalid", `unknown deploy strategy "fast"; use one-by-one or all-at-once`},
		{"negative timeout", "PATCH", p, `{"timeout": -1}`, 422, "invalid", "deploy timeout -1: give a number of seconds from 1 to 3600 (0 for the default)"},
		{"huge timeout", "PATCH", p, `{"strategy": "all-at-once", "timeout": 3601}`, 422, "invalid", "deploy timeout 3601"},
		{"timeout as a string", "PATCH", p, `{"timeout": "10s"}`, 400, "bad_request", `field "timeout"`},
		{"unknown field", "PATCH", p, `{"strategie": "all-at-once"}`, 400, "bad_request", "strategie"},
		{"unknown app", "PATCH", "/v1/apps/nope/deploy", `{}`, 404, "app_not_found", `no app named "nope"`},
		{"unknown app's deployments", "GET", "/v1/apps/nope/deployments", ``, 404, "app_not_found", `no app named "nope"`},
		{"unknown deployment", "GET", "/v1/apps/demo/deployments/nope", ``, 404, "deployment_not_found", `app "demo" has no deployment "nope"`},
		{"unknown deployment's events", "GET", "/v1/apps/demo/deployments/00000000-0000-4000-8000-000000000000/events", ``, 404, "deployment_not_found", "no deployment"},
		{"wrong method", "PUT", p, `{}`, 405, "method_not_allowed", "GET, HEAD, PATCH"},
	})
	// Nothing refused was stored.
	if st, err := a.c.GetDeploySettings(ctx, "demo"); err != nil || st.Strategy != "one-by-one" || !st.TimeoutDefault {
		t.Errorf("after refused changes: %+v, %v", st, err)
	}
	if deps, err := a.c.ListDeployments(ctx, "demo"); err != nil || len(deps) != 0 {
		t.Errorf("ListDeployments of an app without releases = %+v, %v", deps, err)
	}
}

func intPtr(n int) *int { return &n }

// TestFailedConfigDeployRestoresConfig changes a config var to a value
// that makes the new release crash: the deployment rolls back, the config
// vars are the running release's again (so the next release does not take
// the bad value), and the deployment and the app's events say so. A
// config changed again since is left alone.
func TestFailedConfigDeployRestoresConfig(t *testing.T) {
	t.Parallel()
	events := &eventLog{}
	a := newAPI(t, func(c *controller.Config) { c.Events = events })
	ctx := t.Context()
	exit := 127
	// Every release from v3 on crashes (PATH=/nonexistent); v4's jobs
	// only once v5 exists.
	var v5 atomic.Bool
	behave := func(version int, typ string, index int) keyspace.JobState {
		if version == 4 && !v5.Load() {
			return keyspace.JobState{State: keyspace.StateStarting}
		}
		if version >= 3 {
			return keyspace.JobState{State: keyspace.StateCrashed, ExitCode: &exit, LastLines: []string{"exec: not found"}}
		}
		return keyspace.JobState{State: keyspace.StateUp}
	}
	deployedApp(t, a, "demo", 1, func() jobBehaviour { return behave })
	if _, _, err := a.c.UpdateConfigDeployment(ctx, "demo", map[string]*string{"PATH": ptr("/bin")}); err != nil {
		t.Fatal(err)
	}
	a.waitState(t, "demo", 2, types.DeployComplete)

	_, id, err := a.c.UpdateConfigDeployment(ctx, "demo", map[string]*string{"PATH": ptr("/nonexistent"), "NEW": ptr("1")})
	if err != nil || id == "" {
		t.Fatalf("UpdateConfigDeployment = %q, %v", id, err)
	}
	a.waitState(t, "demo", 3, types.DeployRolledBack)
	cfg, err := a.c.GetConfig(ctx, "demo")
	if err != nil || !maps.Equal(cfg, map[string]string{"PATH": "/bin"}) {
		t.Errorf("config after the failed deploy = %v, %v; want v2's", cfg, err)
	}
	d, err := a.c.GetDeployment(ctx, "demo", id)
	if err != nil {
		t.Fatal(err)
	}
	if !d.ConfigRestored || !strings.HasSuffix(d.Status(), "; v2 keeps running, and the config is v2's again (the change was undone)") {
		t.Errorf("deployment = %+v, Status() = %q", d, d.Status())
	}
	waitFor(t, "the event of the restored config", func() bool {
		return slices.Contains(events.list(), "demo: rolled back to v2; the config is v2's again")
	})

	// A release made while v4 deploys (a change after the failing one)
	// keeps its config: only a config nobody changed since is restored.
	if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"PATH": ptr("/nonexistent")}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"OTHER": ptr("x")}); err != nil {
		t.Fatal(err)
	}
	v5.Store(true)
	a.waitState(t, "demo", 5, types.DeployRolledBack)
	cfg, _ = a.c.GetConfig(ctx, "demo")
	d4 := deploymentOf(t, a, "demo", 4)
	if d4.ConfigRestored {
		t.Errorf("v4's deployment restored the config although v5 changed it since: %+v", d4)
	}
	if d5 := deploymentOf(t, a, "demo", 5); !d5.ConfigRestored || !maps.Equal(cfg, map[string]string{"PATH": "/bin"}) {
		t.Errorf("after v5 failed: config %v, deployment %+v", cfg, d5)
	}
}

// deploymentOf returns the deployment of release version of app.
func deploymentOf(t *testing.T, a *api, app string, version int) types.Deployment {
	t.Helper()
	deps, err := a.c.ListDeployments(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		if d.NewRelease == version {
			return d
		}
	}
	t.Fatalf("no deployment of v%d in %+v", version, deps)
	return types.Deployment{}
}
