package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/deploy/up"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// agentKills is how many times the agent's crash test kills the host
// agent.
const agentKills = 10

// routerServesWithin is how soon after its container is killed a host's
// router serves again.
const routerServesWithin = 2 * time.Second

// TestPlatformContainersCrash runs the platform as containers (`gantryd up
// --detach`) with an image app at web=2 and crashes its parts, one
// subtest each, on that one platform:
//
//   - router: its job's container killed, by a SIGKILL of its process from
//     the host and by docker kill, serves again within 2 s, the same job in
//     the same container (the agent starts it again in place);
//   - controller: killed under steady load through the router, the CLI
//     says it cannot reach the API at its URL while it is down, no request
//     fails, and the controller comes back by itself, in place, and the
//     CLI works again;
//   - agent: its process killed (SIGKILL from the host, as a crash) ten
//     times under steady load, Docker's restart policy brings it back each
//     time; no request fails, and nothing of the app or the platform is
//     disturbed: the same jobs run in the same containers, never
//     restarted, the instances never leave discovery and the jobs never
//     leave the up state; each new run of the agent reuses the lease and
//     adopts the jobs, and the app's log holds its output once, the lines
//     written while no agent ran included.
//
// None of it restarts or replaces a container of the app.
func TestPlatformContainersCrash(t *testing.T) {
	// The router ships a line per request to the app's log: keep more than
	// the load's, so the app's own lines stay in the history.
	p, docker, cluster := containersPlatform(t, testenv.FreeAddr(t), "--log-lines", "200000")
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	n, etcd := platformEtcd(t, p)
	space := keyspace.MustNew(n.Cluster)

	const app = "steady"
	host := app + ".localhost"
	p.ok("create", app)
	p.ok("release", "create", "-a", app, "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", app, "web=2")
	eventually(t, 2*time.Minute, "web=2 up", func() bool { return p.settled(app, 1, 2) })
	eventually(t, time.Minute, "the app answers 200 through the router", func() bool {
		code, _, err := p.get(host, "/")
		return err == nil && code == http.StatusOK
	})
	eventually(t, time.Minute, "both instances in discovery", func() bool {
		return len(getPrefix(t, etcd, space.Service(app+"-web"))) == 2
	})
	containers := p.appContainers(docker, app)
	if len(containers) != 2 {
		t.Fatalf("%d containers of %s, want 2", len(containers), app)
	}
	startsBefore := containerStarts(t, docker, slices.Collect(maps.Keys(containers)))

	t.Run("router", func(t *testing.T) {
		for _, k := range []struct {
			how  string
			kill func(id string)
		}{
			{"a SIGKILL of its process", func(id string) { killProcess(t, containerPID(t, docker, id)) }},
			{"docker kill", func(id string) { dockerKill(t, docker, id) }},
		} {
			router := systemJob(t, docker, cluster, up.AppRouter)
			// The agent starts a system job's container that ran for 10 s
			// again at once (one that exited sooner, after a delay).
			eventually(t, time.Minute, "the router's container running for 10 s", func() bool {
				return ranFor(t, docker, router.ID) >= 10*time.Second
			})
			gap := serveGap(t, p, host, func() { k.kill(router.ID) })
			t.Logf("the router served again %s after %s", gap.Round(time.Millisecond), k.how)
			if gap > routerServesWithin {
				t.Errorf("the router served again %s after %s, want within %s", gap, k.how, routerServesWithin)
			}
			if again := systemJob(t, docker, cluster, up.AppRouter); again.ID != router.ID || again.Labels[keyspace.LabelJob] != router.Labels[keyspace.LabelJob] {
				t.Errorf("after %s: the router's job %s in container %s, want the same job %s in the same container %s",
					k.how, again.Labels[keyspace.LabelJob], again.ID, router.Labels[keyspace.LabelJob], router.ID)
			}
		}
	})

	t.Run("controller", func(t *testing.T) {
		l := startSteadyLoad(p.httpURL+"/", host)
		controller := systemJob(t, docker, cluster, up.AppController)
		wantErr := "cannot reach the controller at " + p.apiURL + ": "
		// The CLI runs right after the kill. When the controller was back
		// before it ran, it is killed again: the agent starts a system
		// job's container that exited soon after its start only after a
		// delay that doubles with each such exit (250 ms, 500 ms, 1 s,
		// ...), so a later kill meets a longer outage.
		var killed time.Time
		for kill := 1; ; kill++ {
			killed = time.Now()
			killProcess(t, containerPID(t, docker, controller.ID))
			res := p.run("", nil, "apps")
			if res.code != 0 {
				if res.code != 1 || !strings.Contains(res.stderr, wantErr) {
					t.Errorf("gantry apps with the controller down: exit %d, stderr %q, want exit 1 and %q", res.code, res.stderr, wantErr)
				}
				break
			}
			if kill == 8 {
				t.Fatalf("gantry apps answered after each of %d kills of the controller", kill)
			}
			t.Logf("kill %d: the controller was back before gantry apps ran; killing it again", kill)
			eventually(t, time.Minute, "the controller's container running again", func() bool {
				return containerPID(t, docker, controller.ID) != 0
			})
		}
		eventually(t, 2*time.Minute, "gantry apps working again", func() bool {
			return p.run("", nil, "apps").code == 0
		})
		t.Logf("gantry apps worked again %s after the last kill of the controller", time.Since(killed).Round(time.Millisecond))
		if !p.settled(app, 1, 2) {
			t.Errorf("after the controller's restart: gantry ps does not show web=2 up:\n%s", p.ok("ps", "-a", app))
		}
		if again := systemJob(t, docker, cluster, up.AppController); again.ID != controller.ID {
			t.Errorf("the controller's container after the kills: %s, want the same %s started again", again.ID, controller.ID)
		}
		l.end(t, "kills of the controller", minRequests/10)
	})

	t.Run("agent", func(t *testing.T) {
		agentContainer := platformContainer(t, docker, cluster, up.SystemAgent)
		jobsBefore := map[string]string{} // job ID -> container ID
		statesBefore := map[string]keyspace.JobState{}
		for _, st := range appJobStates(t, etcd, space, app) {
			jobsBefore[st.JobID] = st.ContainerID
			statesBefore[st.JobID] = st
		}
		if len(jobsBefore) != 2 {
			t.Fatalf("%d jobs of %s, want 2", len(jobsBefore), app)
		}
		// The platform's own jobs are not restarted either.
		systemJobs := map[string]string{}
		for _, c := range listContainers(t, docker, false, keyspace.LabelCluster+"="+cluster, keyspace.LabelJob, keyspace.LabelSystem) {
			systemJobs[c.Labels[keyspace.LabelJob]] = c.ID
		}
		hostBefore, leaseBefore := hostRecord(t, etcd, space, n.HostID)
		agent := hostclient.New(hostBefore.APIURL, n.HostToken)
		eventually(t, time.Minute, "the agent runs the app's and the platform's jobs, up", func() bool {
			return adopted(t, agent, jobsBefore, systemJobs)
		})
		systemStarts := containerStarts(t, docker, slices.Collect(maps.Values(systemJobs)))
		restartsBefore := restartCount(t, docker, agentContainer)
		watch := watchDisturbances(t, etcd, space, app, statesBefore)

		l := startSteadyLoad(p.httpURL+"/", host)
		var said []string
		for i := 1; i <= agentKills; i++ {
			// The kills are spread over the load, and each run of the
			// agent lives 10 s: Docker restarts it after 100 ms then,
			// and after twice its last delay when it ran less.
			eventually(t, time.Minute, fmt.Sprintf("kill %d: its share of the load", i), func() bool {
				return l.total() >= int64(i*minRequests/(agentKills+1))
			})
			eventually(t, time.Minute, fmt.Sprintf("kill %d: the agent running for 10 s", i), func() bool {
				return ranFor(t, docker, agentContainer) >= 10*time.Second
			})
			killedAt, killed := revision(t, etcd), time.Now()
			killProcess(t, containerPID(t, docker, agentContainer))
			// Output the app writes while no agent runs reaches its log
			// once the agent is back.
			msg := fmt.Sprintf("said-while-no-agent-ran-%d", i)
			if code, _, err := p.get(host, "/say?msg="+msg); err != nil || code != http.StatusOK {
				t.Fatalf("kill %d: GET /say: %d %v", i, code, err)
			}
			said = append(said, msg)
			eventually(t, time.Minute, fmt.Sprintf("kill %d: the new agent's host record, healthy", i), func() bool {
				h, _ := hostRecord(t, etcd, space, n.HostID)
				return h.StartedAt.After(hostBefore.StartedAt) && h.Healthy
			})
			h, lease := hostRecord(t, etcd, space, n.HostID)
			if lease != leaseBefore {
				t.Errorf("kill %d: the host record is under lease %x, want the first run's %x reused", i, lease, leaseBefore)
			}
			hostBefore = h
			// The new run adopts the jobs, then writes each one's state
			// once it has inspected its container.
			eventually(t, time.Minute, fmt.Sprintf("kill %d: the new agent adopted every job and inspected the app's containers", i), func() bool {
				return adopted(t, agent, jobsBefore, systemJobs) && written(t, etcd, space, slices.Collect(maps.Keys(jobsBefore)), killedAt)
			})
			t.Logf("kill %d: the agent back, on its lease, with every job adopted %s after the kill", i, time.Since(killed).Round(time.Millisecond))
		}
		l.end(t, fmt.Sprintf("%d kills of the host agent", agentKills), minRequests)

		if got := restartCount(t, docker, agentContainer); got != restartsBefore+agentKills {
			t.Errorf("Docker restarted the agent's container %d times, want %d", got-restartsBefore, agentKills)
		}
		for _, d := range watch.stop() {
			t.Errorf("disturbed while the agent was killed: %s", d)
		}
		for _, st := range appJobStates(t, etcd, space, app) {
			if got, want := mustJSON(st), mustJSON(statesBefore[st.JobID]); got != want {
				t.Errorf("job state after the kills:\n%s\nwant the one before:\n%s", got, want)
			}
		}
		if after := containerStarts(t, docker, slices.Collect(maps.Values(systemJobs))); !maps.Equal(after, systemStarts) {
			t.Errorf("the system jobs' container starts after the kills: %v, want the same %v", after, systemStarts)
		}

		// Each line of the app's output is in its log once: the start of
		// each container, and what it said while no agent ran.
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
	})

	if after := p.appContainers(docker, app); !maps.Equal(keySet(after), keySet(containers)) {
		t.Errorf("app containers after the crashes: %v, want the same %v", slices.Collect(maps.Keys(after)), slices.Collect(maps.Keys(containers)))
	}
	if after := containerStarts(t, docker, slices.Collect(maps.Keys(containers))); !maps.Equal(after, startsBefore) {
		t.Errorf("app container starts after the crashes: %v, want the same %v", after, startsBefore)
	}
}

// platformEtcd connects to the etcd of a platform that containersPlatform
// started, with the data dir's certificate; the test's end closes it.
func platformEtcd(t *testing.T, p *platform) (*node.Node, *clientv3.Client) {
	t.Helper()
	i := slices.Index(p.args, "--etcd-client-addr")
	if i < 0 || i+1 >= len(p.args) {
		t.Fatalf("no --etcd-client-addr in %q", p.args)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := node.Open(ctx, p.data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.EtcdClient(node.EtcdClientConfig{Endpoints: []string{"https://" + p.args[i+1]}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return n, c
}

// systemJob returns the running container of the system app's job.
func systemJob(t *testing.T, docker *client.Client, cluster, app string) container.Summary {
	t.Helper()
	var list []container.Summary
	eventually(t, time.Minute, "one running container of "+app, func() bool {
		list = listContainers(t, docker, false, keyspace.LabelCluster+"="+cluster, keyspace.LabelApp+"="+app, keyspace.LabelSystem)
		return len(list) == 1
	})
	return list[0]
}

// platformContainer returns the ID of the cluster's platform container of
// component (the agent, etcd, PostgreSQL), running or not.
func platformContainer(t *testing.T, docker *client.Client, cluster, component string) string {
	t.Helper()
	list := listContainers(t, docker, true, keyspace.LabelCluster+"="+cluster, keyspace.LabelSystem+"="+component)
	if len(list) != 1 {
		t.Fatalf("%d %s containers of the cluster, want 1", len(list), component)
	}
	return list[0].ID
}

// inspect inspects a container.
func inspect(t *testing.T, docker *client.Client, id string) container.InspectResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	info, err := docker.ContainerInspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// running reports whether info is of a running container, not one that
// waits for Docker's restart.
func running(info container.InspectResponse) bool {
	return info.State != nil && info.State.Running && !info.State.Restarting
}

// containerPID returns the host PID of a container's main process, 0
// when it is not running.
func containerPID(t *testing.T, docker *client.Client, id string) int {
	t.Helper()
	if info := inspect(t, docker, id); running(info) {
		return info.State.Pid
	}
	return 0
}

// ranFor returns how long a container has run since its last start, 0
// when it is not running.
func ranFor(t *testing.T, docker *client.Client, id string) time.Duration {
	t.Helper()
	info := inspect(t, docker, id)
	if !running(info) {
		return 0
	}
	started, err := time.Parse(time.RFC3339Nano, info.State.StartedAt)
	if err != nil {
		t.Fatalf("container %s started at %q: %v", id, info.State.StartedAt, err)
	}
	return time.Since(started)
}

// restartCount returns how many times Docker's restart policy restarted a
// container.
func restartCount(t *testing.T, docker *client.Client, id string) int {
	t.Helper()
	return inspect(t, docker, id).RestartCount
}

// killProcess sends SIGKILL to a process of the host, as a crash would,
// and waits until it is gone.
func killProcess(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("kill: no process (pid %d)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	waitGone(t, pid)
}

// waitGone waits until no process has the PID: its parent reaped it.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still there a minute after SIGKILL", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// dockerKill kills a running container with docker kill, after which
// Docker applies no restart policy, and waits until its process is gone.
func dockerKill(t *testing.T, docker *client.Client, id string) {
	t.Helper()
	pid := containerPID(t, docker, id)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := docker.ContainerKill(ctx, id, "KILL"); err != nil {
		t.Fatalf("docker kill %s: %v", id, err)
	}
	waitGone(t, pid)
}

// serveGap runs kill, which returns once the router's process is gone,
// then sends GET / through the router every 10 ms, each on a new
// connection, and returns the time from the kill to its first 200.
func serveGap(t *testing.T, p *platform, host string, kill func()) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	killed := time.Now()
	kill()
	for time.Since(killed) < time.Minute {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.httpURL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		if resp, err := client.Do(req); err == nil {
			_, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return time.Since(killed)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the router did not serve again within a minute of its kill")
	return 0
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

// adopted reports whether the agent runs exactly the jobs of the maps
// (job ID -> container ID), up, in the same containers.
func adopted(t *testing.T, agent *hostclient.Client, want ...map[string]string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	jobs, err := agent.ListJobs(ctx)
	if err != nil {
		return false
	}
	got, all := map[string]string{}, map[string]string{}
	for _, j := range jobs {
		if j.State == keyspace.StateUp {
			got[j.JobID] = j.ContainerID
		}
	}
	for _, w := range want {
		maps.Copy(all, w)
	}
	return len(jobs) == len(all) && maps.Equal(got, all)
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
