// Package layer0_test runs layer0 as a whole: the scheduler and one or two
// host agents against a real embedded etcd and the real Docker Engine, with
// the test playing the controller by writing formations.
package layer0_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
)

// jobMemory is the memory of every job the tests run; a host offered this
// much memory takes exactly one.
const jobMemory = 64 << 20

// testLogger shows the components' logs under go test -v.
func testLogger(component string) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", component)
	}
	return slog.New(slog.DiscardHandler)
}

// cluster is one Gantry cluster's layer0 on the machine's Docker Engine.
type cluster struct {
	t      *testing.T
	id     string
	space  keyspace.Space
	etcd   *clientv3.Client
	docker *client.Client
	image  string
	hosts  map[string]context.CancelFunc
	hostWG map[string]chan struct{}
}

func newCluster(t *testing.T, etcd *clientv3.Client, docker *client.Client, image string) *cluster {
	t.Helper()
	return newClusterWithGrace(t, etcd, docker, image, 2*time.Second)
}

// newClusterWithGrace is newCluster with the scheduler's host grace.
func newClusterWithGrace(t *testing.T, etcd *clientv3.Client, docker *client.Client, image string, grace time.Duration) *cluster {
	t.Helper()
	id := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
	c := &cluster{t: t, id: id, space: keyspace.MustNew(id), etcd: etcd, docker: docker, image: image,
		hosts: map[string]context.CancelFunc{}, hostWG: map[string]chan struct{}{}}
	testenv.CleanupContainers(t, docker, id)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		scheduler.Run(ctx, scheduler.Config{
			Cluster:   id,
			Etcd:      etcd,
			ID:        "sched-" + id,
			HostGrace: grace,
			Backoff:   placement.Backoff{Free: 1, Base: 2 * time.Second, Cap: 30 * time.Second, Reset: time.Minute},
			Logger:    testLogger("scheduler"),
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// startHost runs a host agent advertising addr; state persists in stateDir
// so a restart reuses the lease and adopts containers. memory is the
// capacity the host offers to jobs; zero means the engine's total memory.
func (c *cluster) startHost(name, addr, stateDir string, memory int64) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := host.Run(ctx, host.Config{
			ID:            name,
			Cluster:       c.id,
			Etcd:          c.etcd,
			Docker:        c.docker,
			AdvertiseAddr: addr,
			APIAddr:       addr + ":0",
			APIToken:      "token",
			StateDir:      stateDir,
			Memory:        memory,
			LeaseTTL:      2 * time.Second,
			DrainDelay:    100 * time.Millisecond,
			Logger:        testLogger("host"),
		})
		if err != nil {
			c.t.Errorf("host %s: %v", name, err)
		}
	}()
	c.hosts[name] = cancel
	c.hostWG[name] = done
	c.t.Cleanup(func() { c.stopHost(name) })
}

func (c *cluster) stopHost(name string) {
	if cancel, ok := c.hosts[name]; ok {
		cancel()
		<-c.hostWG[name]
		delete(c.hosts, name)
	}
}

// scale writes the formation of app's release r1 web process, as the
// controller would.
func (c *cluster) scale(app string, count int, env map[string]string) {
	c.t.Helper()
	f := keyspace.Formation{
		App: app, Release: "r1", Type: "web", Count: count,
		Template: keyspace.JobSpec{
			App: app, Release: "r1", ReleaseVersion: 1, Type: "web",
			Image: c.image, Env: env, Port: 8080, Service: app + "-web",
			Health:      keyspace.HealthCheck{Path: "/healthz"},
			Resources:   keyspace.Resources{Memory: jobMemory},
			StopTimeout: 2 * time.Second,
		},
		UpdatedAt: time.Now(),
	}
	b, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.etcd.Put(ctx, c.space.Formation(app, "r1", "web"), string(b)); err != nil {
		c.t.Fatal(err)
	}
}

// containers lists the running containers of the cluster for app, by ID.
func (c *cluster) containers(app string) map[string]container.Summary {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := c.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", keyspace.LabelCluster+"="+c.id),
		filters.Arg("label", keyspace.LabelApp+"="+app),
	)})
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]container.Summary{}
	for _, s := range list {
		if s.State == "running" {
			out[s.ID] = s
		}
	}
	return out
}

// jobs returns the app's job states by job ID.
func (c *cluster) jobs(app string) map[string]keyspace.JobState {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.space.Jobs(), clientv3.WithPrefix())
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]keyspace.JobState{}
	for _, kv := range resp.Kvs {
		var s keyspace.JobState
		if json.Unmarshal(kv.Value, &s) == nil && s.App == app {
			out[s.JobID] = s
		}
	}
	return out
}

// assignments returns the app's assignments.
func (c *cluster) assignments(app string) []keyspace.Assignment {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.etcd.Get(ctx, c.space.Assignments(), clientv3.WithPrefix())
	if err != nil {
		c.t.Fatal(err)
	}
	var out []keyspace.Assignment
	for _, kv := range resp.Kvs {
		var a keyspace.Assignment
		if json.Unmarshal(kv.Value, &a) == nil && a.Spec.App == app {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}

// upJobs counts the app's jobs that are up and whose address answers HTTP.
func (c *cluster) upJobs(app string) int {
	n := 0
	for _, s := range c.jobs(app) {
		if s.State == keyspace.StateUp && s.Addr != "" && answers(s.Addr) {
			n++
		}
	}
	return n
}

func answers(addr string) bool {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func setup(t *testing.T) (*clientv3.Client, *client.Client, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Docker and etcd")
	}
	docker := testenv.Docker(t)
	etcd := testenv.Etcd(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join("host", "testdata", "httpserver"))
	return etcd, docker, image
}

func TestScaleKillAndAdopt(t *testing.T) {
	etcd, docker, image := setup(t)
	c := newCluster(t, etcd, docker, image)
	state := t.TempDir()
	c.startHost("h1", "127.0.0.1", state, 0)

	for _, n := range []int{3, 1} {
		c.scale("web1", n, nil)
		eventually(t, 60*time.Second, fmt.Sprintf("%d containers up and answering", n), func() bool {
			return len(c.containers("web1")) == n && c.upJobs("web1") == n
		})
	}

	// docker kill of one container: the scheduler replaces it and the
	// assignment counts the restart.
	c.scale("web1", 2, nil)
	eventually(t, 60*time.Second, "2 up", func() bool { return len(c.containers("web1")) == 2 && c.upJobs("web1") == 2 })
	var victim string
	for id := range c.containers("web1") {
		victim = id
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := docker.ContainerKill(ctx, victim, "SIGKILL"); err != nil {
		t.Fatal(err)
	}
	cancel()
	eventually(t, 60*time.Second, "the killed container replaced", func() bool {
		cs := c.containers("web1")
		_, stillThere := cs[victim]
		restarted := false
		for _, a := range c.assignments("web1") {
			restarted = restarted || a.Restarts > 0
		}
		return !stillThere && len(cs) == 2 && c.upJobs("web1") == 2 && restarted
	})

	// Restarting the agent adopts the running containers: same IDs, same
	// start times.
	before := c.containers("web1")
	started := map[string]string{}
	for id := range before {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := docker.ContainerInspect(ctx, id)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		started[id] = info.State.StartedAt
	}
	c.stopHost("h1")
	c.startHost("h1", "127.0.0.1", state, 0)
	eventually(t, 30*time.Second, "jobs up again after the agent restart", func() bool { return c.upJobs("web1") == 2 })
	after := c.containers("web1")
	if len(after) != len(before) {
		t.Fatalf("containers after agent restart: %d, before: %d", len(after), len(before))
	}
	for id := range before {
		if _, ok := after[id]; !ok {
			t.Fatalf("container %s was replaced across the agent restart", id[:12])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := docker.ContainerInspect(ctx, id)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if info.State.StartedAt != started[id] {
			t.Fatalf("container %s restarted across the agent restart", id[:12])
		}
	}

	c.scale("web1", 0, nil)
	eventually(t, 60*time.Second, "no container left", func() bool { return len(c.containers("web1")) == 0 })
}

func TestTwoClustersShareAnEngine(t *testing.T) {
	etcd, docker, image := setup(t)
	a := newCluster(t, etcd, docker, image)
	b := newCluster(t, etcd, docker, image)
	a.startHost("h1", "127.0.0.1", t.TempDir(), 0)
	b.startHost("h1", "127.0.0.1", t.TempDir(), 0)
	a.scale("app", 2, nil)
	b.scale("app", 1, nil)
	eventually(t, 60*time.Second, "both clusters running", func() bool {
		return len(a.containers("app")) == 2 && len(b.containers("app")) == 1
	})
	bIDs := b.containers("app")
	a.scale("app", 0, nil)
	eventually(t, 60*time.Second, "cluster a empty", func() bool { return len(a.containers("app")) == 0 })
	got := b.containers("app")
	for id := range bIDs {
		if _, ok := got[id]; !ok {
			t.Fatalf("scaling cluster a down touched cluster b's container %s", id[:12])
		}
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	etcd, docker, image := setup(t)
	c := newCluster(t, etcd, docker, image)
	c.startHost("h1", "127.0.0.1", t.TempDir(), 0)
	// The process exits with status 3 a moment after it starts.
	c.scale("crashy", 1, map[string]string{"EXIT_AFTER": "100ms", "EXIT_CODE": "3"})
	eventually(t, 60*time.Second, "a crash with exit code 3", func() bool {
		for _, s := range c.jobs("crashy") {
			if s.State == keyspace.StateCrashed && s.ExitCode != nil && *s.ExitCode == 3 && len(s.LastLines) > 0 {
				return true
			}
		}
		return false
	})
	// With one free restart and then 2 s, 4 s, 8 s ... a spinning loop
	// would reach dozens of restarts in 12 s; the back-off allows a few.
	time.Sleep(12 * time.Second)
	restarts := 0
	for _, a := range c.assignments("crashy") {
		restarts = max(restarts, a.Restarts)
	}
	t.Logf("restarts after 12s of crash loop: %d", restarts)
	if restarts < 1 || restarts > 5 {
		t.Fatalf("restarts = %d after 12s: want the back-off to allow between 1 and 5", restarts)
	}
	c.scale("crashy", 0, nil)
	eventually(t, 60*time.Second, "no container left", func() bool { return len(c.containers("crashy")) == 0 })
}

// TestLostHostJobsMove: a host that stops heartbeating loses its job to a
// live host once its lease has expired and the host grace has passed; the
// job of the host that stays is left alone. Each host has room for one job,
// so where the jobs go does not depend on when the scheduler learns of each
// host (it never moves a running job to a host that registers later): the
// two jobs can only run one on h1 and one on h2, and h2's job can only move
// to h3, which joins as h2 goes.
func TestLostHostJobsMove(t *testing.T) {
	etcd, docker, image := setup(t)
	c := newCluster(t, etcd, docker, image)
	c.startHost("h1", "127.0.0.1", t.TempDir(), jobMemory)
	c.startHost("h2", "127.0.0.2", t.TempDir(), jobMemory)
	c.scale("spread", 2, nil)
	eventually(t, 60*time.Second, "one job up on h1 and one on h2", func() bool {
		up := map[string]int{}
		for _, s := range c.jobs("spread") {
			if s.State == keyspace.StateUp {
				up[s.HostID]++
			}
		}
		return up["h1"] == 1 && up["h2"] == 1
	})
	var kept string
	for _, a := range c.assignments("spread") {
		if a.HostID == "h1" {
			kept = a.JobID
		}
	}

	// h2 stops heartbeating: its agent dies without cleaning up.
	c.stopHost("h2")
	c.startHost("h3", "127.0.0.3", t.TempDir(), jobMemory)
	eventually(t, 60*time.Second, "h2's job up on h3 and h1's job kept", func() bool {
		jobOn := map[string]string{}
		as := c.assignments("spread")
		for _, a := range as {
			jobOn[a.HostID] = a.JobID
		}
		if len(as) != 2 || jobOn["h1"] != kept || jobOn["h3"] == "" {
			return false
		}
		s := c.jobs("spread")[jobOn["h3"]]
		return s.State == keyspace.StateUp && strings.HasPrefix(s.Addr, "127.0.0.3:")
	})
	c.scale("spread", 0, nil)
	eventually(t, 60*time.Second, "h1's and h3's containers gone", func() bool {
		for _, s := range c.containers("spread") {
			if h := s.Labels[host.LabelHost]; h == "h1" || h == "h3" {
				return false
			}
		}
		return true
	})
}
