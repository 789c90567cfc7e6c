package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/testenv"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// agentKills is how many times TestAgentKill crashes the host agent.
const agentKills = 10

// TestAgentKill crashes the host agent (`gantryd host`, SIGKILL) again and
// again under steady load through the router, and starts it again each
// time with the same flags. No request fails, and nothing of the app is
// disturbed: the same jobs run in the same containers, never restarted,
// the instances never leave discovery and the jobs never leave the up
// state; each new run of the agent, started at once or after half the
// host lease's TTL, reuses the lease and adopts the jobs; the app's log holds its output once, the lines written while no
// agent ran included. Then the controller is killed: the CLI says it
// cannot reach the API at its URL, the app keeps serving, and the CLI
// works again once the controller is back.
func TestAgentKill(t *testing.T) {
	// The router ships a line per request to the app's log: keep more
	// than the load's, so the app's own lines stay in the history.
	rp := startRoleProcesses(t, map[string][]string{"logaggregator": {"--lines", "200000"}})
	r, p := rp.roles, rp.platform
	docker := testenv.Docker(t)
	n, etcd := rp.etcdClient(t)
	space := keyspace.MustNew(n.Cluster)

	const app = "steady"
	host := app + ".localhost"
	p.ok("create", app)
	p.ok("release", "create", "-a", app, "--image", rp.image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", app, "web=2")
	eventually(t, 2*time.Minute, "web=2 up", func() bool { return p.settled(app, 1, 2) })
	eventually(t, time.Minute, "the app answers 200 through the router", func() bool {
		code, _, err := p.get(host, "/")
		return err == nil && code == http.StatusOK
	})
	eventually(t, time.Minute, "both instances in discovery", func() bool {
		return len(getPrefix(t, etcd, space.Service(app+"-web"))) == 2
	})

	jobsBefore := map[string]string{} // job ID -> container ID
	statesBefore := map[string]keyspace.JobState{}
	for _, st := range appJobStates(t, etcd, space, app) {
		jobsBefore[st.JobID] = st.ContainerID
		statesBefore[st.JobID] = st
	}
	containers := p.appContainers(docker, app)
	if len(jobsBefore) != 2 || len(containers) != 2 {
		t.Fatalf("%d jobs and %d containers of %s, want 2 each", len(jobsBefore), len(containers), app)
	}
	startsBefore := containerStarts(t, docker, slices.Collect(maps.Keys(containers)))
	hostBefore, leaseBefore := hostRecord(t, etcd, space, n.HostID)
	agent := hostclient.New(hostBefore.APIURL, n.HostToken)
	watch := watchDisturbances(t, etcd, space, app, statesBefore)

	l := startSteadyLoad(p.httpURL+"/", host)
	var said []string
	for i := 1; i <= agentKills; i++ {
		// The kills are spread over the load, so that each run of the
		// agent lives a while: it health-checks, re-inspects and ships.
		eventually(t, time.Minute, fmt.Sprintf("kill %d: its share of the load", i), func() bool {
			return l.total() >= int64(i*minRequests/(agentKills+1))
		})
		killedAt := revision(t, etcd)
		r.kill("host")
		// Output the app writes while no agent runs reaches its log
		// once the agent is back.
		msg := fmt.Sprintf("said-while-no-agent-ran-%d", i)
		if code, _, err := p.get(host, "/say?msg="+msg); err != nil || code != http.StatusOK {
			t.Fatalf("kill %d: GET /say: %d %v", i, code, err)
		}
		said = append(said, msg)
		if i%2 == 0 {
			// Every other agent stays down until half its lease's time
			// is gone, as a slower restart would.
			eventually(t, time.Minute, fmt.Sprintf("kill %d: half the lease's TTL gone", i), func() bool {
				ttl, granted := leaseTTL(t, etcd, leaseBefore)
				return ttl <= granted/2
			})
		}
		r.restart("host")
		eventually(t, time.Minute, fmt.Sprintf("kill %d: the new agent's host record, healthy", i), func() bool {
			h, _ := hostRecord(t, etcd, space, n.HostID)
			return h.StartedAt.After(hostBefore.StartedAt) && h.Healthy
		})
		h, lease := hostRecord(t, etcd, space, n.HostID)
		if lease != leaseBefore {
			t.Errorf("kill %d: the host record is under lease %x, want the first run's %x reused", i, lease, leaseBefore)
		}
		hostBefore = h
		// The new run adopts the jobs, then writes each one's state once
		// it has inspected its container.
		eventually(t, time.Minute, fmt.Sprintf("kill %d: the new agent adopted both jobs and inspected their containers", i), func() bool {
			return adopted(t, agent, jobsBefore) && written(t, etcd, space, slices.Collect(maps.Keys(jobsBefore)), killedAt)
		})
	}
	l.end(t, fmt.Sprintf("%d kills of the host agent", agentKills), minRequests)

	for _, d := range watch.stop() {
		t.Errorf("disturbed while the agent was killed: %s", d)
	}
	for _, st := range appJobStates(t, etcd, space, app) {
		if got, want := mustJSON(st), mustJSON(statesBefore[st.JobID]); got != want {
			t.Errorf("job state after the kills:\n%s\nwant the one before:\n%s", got, want)
		}
	}
	if after := p.appContainers(docker, app); !maps.Equal(keySet(after), keySet(containers)) {
		t.Errorf("app containers after the kills: %v, want the same %v", slices.Collect(maps.Keys(after)), slices.Collect(maps.Keys(containers)))
	}
	if after := containerStarts(t, docker, slices.Collect(maps.Keys(containers))); !maps.Equal(after, startsBefore) {
		t.Errorf("container starts after the kills: %v, want the same %v", after, startsBefore)
	}

	// Each line of the app's output is in its log once: the start of each
	// container, and what it said while no agent ran.
	want := map[string]int{"listening on": 2}
	for _, m := range said {
		want[m] = 1
	}
	var got map[string]int
	eventually(t, time.Minute, "the app's output in its log, each line once", func() bool {
		got = map[string]int{}
		for msg, n := range appLogCounts(t, p, app) {
			if strings.HasPrefix(msg, "listening on") {
				msg = "listening on"
			}
			if _, ok := want[msg]; ok {
				got[msg] += n
			}
		}
		return maps.Equal(got, want)
	})

	// The controller crashes: the CLI names the API it cannot reach, the
	// app keeps serving, and the CLI works again once it is back.
	l = startSteadyLoad(p.httpURL+"/", host)
	r.kill("controller")
	res := p.run("", nil, "ps", "-a", app)
	if wantErr := "cannot reach the controller at " + p.apiURL + ": "; res.code != 1 || !strings.Contains(res.stderr, wantErr) {
		t.Errorf("gantry ps with the controller down: exit %d, stderr %q, want exit 1 and %q", res.code, res.stderr, wantErr)
	}
	r.restart("controller")
	if err := r.waitHealthy("controller", p.apiURL+"/healthz"); err != nil {
		t.Fatal(err)
	}
	if !p.settled(app, 1, 2) {
		t.Errorf("after the controller's restart: gantry ps does not show web=2 up:\n%s", p.ok("ps", "-a", app))
	}
	l.end(t, "a kill of the controller", minRequests/10)
}

// etcdClient connects to the roles' etcd with the data dir's certificate;
// the test's end closes it.
func (rp *roleProcesses) etcdClient(t *testing.T) (*node.Node, *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := node.Open(ctx, rp.data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.EtcdClient(node.EtcdClientConfig{Endpoints: []string{rp.etcdURL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n, c
}

// getPrefix returns the values under prefix, by key.
func getPrefix(t *testing.T, etcd *clientv3.Client, prefix string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("etcd get %s: %v", prefix, err)
	}
	out := map[string][]byte{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = kv.Value
	}
	return out
}

// appJobStates returns the job states of app's jobs.
func appJobStates(t *testing.T, etcd *clientv3.Client, space keyspace.Space, app string) []keyspace.JobState {
	t.Helper()
	var out []keyspace.JobState
	for key, val := range getPrefix(t, etcd, space.Jobs()) {
		var st keyspace.JobState
		if err := json.Unmarshal(val, &st); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if st.App == app {
			out = append(out, st)
		}
	}
	return out
}

// hostRecord returns the host's record and the lease it is under.
func hostRecord(t *testing.T, etcd *clientv3.Client, space keyspace.Space, id string) (keyspace.Host, clientv3.LeaseID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, space.Host(id))
	if err != nil {
		t.Fatalf("etcd get the host record: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return keyspace.Host{}, 0
	}
	var h keyspace.Host
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		t.Fatalf("host record: %v", err)
	}
	return h, clientv3.LeaseID(resp.Kvs[0].Lease)
}

// revision returns etcd's current revision.
func revision(t *testing.T, etcd *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := etcd.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("etcd get: %v", err)
	}
	return resp.Header.Revision
}

// written reports whether the state of every job of ids was written after
// revision rev.
func written(t *testing.T, etcd *clientv3.Client, space keyspace.Space, ids []string, rev int64) bool {
	t.Helper()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		resp, err := etcd.Get(ctx, space.Job(id))
		cancel()
		if err != nil {
			t.Fatalf("etcd get: %v", err)
		}
		if len(resp.Kvs) == 0 || resp.Kvs[0].ModRevision <= rev {
			return false
		}
	}
	return true
}

// leaseTTL returns the seconds a lease has left and the seconds it was
// granted for.
func leaseTTL(t *testing.T, etcd *clientv3.Client, id clientv3.LeaseID) (ttl, granted int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := etcd.TimeToLive(ctx, id)
	if err != nil {
		t.Fatalf("etcd lease %x: %v", id, err)
	}
	return resp.TTL, resp.GrantedTTL
}

// adopted reports whether the agent runs exactly the jobs of want (job ID
// -> container ID), up, in the same containers.
func adopted(t *testing.T, agent *hostclient.Client, want map[string]string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	jobs, err := agent.ListJobs(ctx)
	if err != nil {
		return false
	}
	got := map[string]string{}
	for _, j := range jobs {
		if j.State == keyspace.StateUp {
			got[j.JobID] = j.ContainerID
		}
	}
	return len(jobs) == len(want) && maps.Equal(got, want)
}

// containerStarts returns, by container ID, when each container started
// and how many times the engine restarted it.
func containerStarts(t *testing.T, docker *client.Client, ids []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		info, err := docker.ContainerInspect(ctx, id)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		out[id] = fmt.Sprintf("started %s, running %v, restarts %d", info.State.StartedAt, info.State.Running, info.RestartCount)
	}
	return out
}

func keySet[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// appLogCounts counts, by text, the lines of the app's own output (not the
// router's) in its log.
func appLogCounts(t *testing.T, p *platform, app string) map[string]int {
	t.Helper()
	res := p.run("", nil, "log", "-a", app, "-n", "200000", "--json")
	if res.code != 0 {
		t.Fatalf("gantry log: exit %d: %s", res.code, res.stderr)
	}
	out := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(res.stdout))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Source string `json:"source"`
			Msg    string `json:"msg"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("gantry log --json: %v: %q", err, sc.Text())
		}
		if l.Source == "app" {
			out[l.Msg]++
		}
	}
	return out
}

// disturbances records, from an etcd watch, every change that tells of an
// app disturbed: an instance of its web service deregistered, one of its
// jobs' states deleted or changed from the one before (up, since the same
// time), an assignment created or deleted, the host record deleted (the
// host's lease lost).
type disturbances struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	seen   []string
}

func watchDisturbances(t *testing.T, etcd *clientv3.Client, space keyspace.Space, app string, states map[string]keyspace.JobState) *disturbances {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	resp, err := etcd.Get(ctx, space.Root(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(t.Context())
	d := &disturbances{cancel: cancel, done: make(chan struct{})}
	ch := etcd.Watch(wctx, space.Root(), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1), clientv3.WithPrevKV())
	go func() {
		defer close(d.done)
		for wr := range ch {
			if err := wr.Err(); err != nil {
				if wctx.Err() == nil {
					d.note("etcd watch: " + err.Error())
				}
				continue
			}
			for _, ev := range wr.Events {
				if what := disturbance(space, app, states, ev); what != "" {
					d.note(what)
				}
			}
		}
	}()
	t.Cleanup(func() { d.stop() })
	return d
}

func (d *disturbances) note(what string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen = append(d.seen, what)
}

// stop ends the watch and returns what it saw.
func (d *disturbances) stop() []string {
	d.cancel()
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen
}

// disturbance describes ev when it disturbs app, whose jobs had states,
// and returns "" otherwise.
func disturbance(space keyspace.Space, app string, states map[string]keyspace.JobState, ev *clientv3.Event) string {
	key := string(ev.Kv.Key)
	deleted := ev.Type == clientv3.EventTypeDelete
	switch {
	case strings.HasPrefix(key, space.Service(app+"-web")) && deleted:
		return "instance deregistered: " + key
	case strings.HasPrefix(key, space.Hosts()) && deleted:
		return "host record deleted: " + key
	case strings.HasPrefix(key, space.Assignments()) && (deleted || ev.IsCreate()):
		return fmt.Sprintf("assignment %s: %s", strings.ToLower(ev.Type.String()), key)
	case strings.HasPrefix(key, space.Jobs()):
		val := ev.Kv.Value
		if deleted && ev.PrevKv != nil {
			val = ev.PrevKv.Value
		}
		var st keyspace.JobState
		if json.Unmarshal(val, &st) != nil || st.App != app {
			return ""
		}
		if deleted {
			return "job state deleted: " + key
		}
		if got, want := mustJSON(st), mustJSON(states[st.JobID]); got != want {
			return fmt.Sprintf("job state changed to %s from %s", got, want)
		}
	}
	return ""
}
