package host_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/host"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

const (
	token       = "test-token"
	webPort     = 8080
	waitTimeout = 60 * time.Second
)

// fixture is what every agent test shares: one Docker Engine, one etcd and
// the test server image. Each test gets its own cluster ID.
type fixture struct {
	docker *client.Client
	etcd   *clientv3.Client
	image  string
}

func TestAgent(t *testing.T) {
	docker := testenv.Docker(t)
	f := &fixture{
		docker: docker,
		etcd:   testenv.Etcd(t),
		image:  testenv.BuildTestImage(t, docker, filepath.Join("testdata", "httpserver")),
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"StartHTTPCheck", testStartHTTPCheck},
		{"StartTCPCheck", testStartTCPCheck},
		{"ImageMissing", testImageMissing},
		{"ImageSaveAPI", testImageSaveAPI},
		{"ImageFetch", testImageFetch},
		{"ImageFetchFails", testImageFetchFails},
		{"Stop", testStop},
		{"SlowStop", testSlowStop},
		{"Crash", testCrash},
		{"FailingHealthCheck", testFailingHealthCheck},
		{"Restart", testRestart},
		{"RestartKeepsStates", testRestartKeepsStates},
		{"Orphans", testOrphans},
		{"LogsAPI", testLogsAPI},
		{"DockerUnreachable", testDockerUnreachable},
		{"LeaseLost", testLeaseLost},
		{"OneOff", testOneOff},
		{"Volumes", testVolumes},
		{"GC", testGC},
		{"Stats", testStats},
		{"SystemJob", testSystemJob},
		{"SystemJobRestart", testSystemJobRestart},
		{"Reboot", testReboot},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, f)
		})
	}
}

// env is one test's cluster.
type env struct {
	*fixture
	t       *testing.T
	cluster string
	space   keyspace.Space
	disc    *discovery.Client
}

func (f *fixture) env(t *testing.T) *env {
	t.Helper()
	cluster := "t" + randomHex(t, 5)
	testenv.CleanupContainers(t, f.docker, cluster)
	space := keyspace.MustNew(cluster)
	return &env{fixture: f, t: t, cluster: cluster, space: space, disc: discovery.New(f.etcd, space, 0, nil)}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// config is an agent config for host id with short delays.
func (e *env) config(id string) host.Config {
	return host.Config{
		ID:         id,
		Cluster:    e.cluster,
		Etcd:       e.etcd,
		Docker:     e.docker,
		APIAddr:    "127.0.0.1:0",
		APIToken:   token,
		StateDir:   e.t.TempDir(),
		DrainDelay: 300 * time.Millisecond,
		LogLines:   200,
		LogURL:     "http://127.0.0.1:7072",
		Version:    "test",
		Logger:     slog.New(slog.NewTextHandler(e.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// agent is one running host.Run.
type agent struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs an agent until stop or the end of the test.
func (e *env) start(cfg host.Config) *agent {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- host.Run(ctx, cfg) }()
	e.t.Cleanup(func() { a.stop(e.t) })
	return a
}

// stop cancels the agent and waits for Run to return.
func (a *agent) stop(t *testing.T) {
	t.Helper()
	a.cancel()
	select {
	case err, ok := <-a.done:
		if ok && err != nil {
			t.Errorf("Run returned %v", err)
		}
		if ok {
			close(a.done)
		}
	case <-time.After(waitTimeout):
		t.Errorf("Run did not return after its context ended")
	}
}

// waitFor polls cond until it holds, failing the test after waitTimeout
// with cond's last explanation.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) webSpec(app string, envVars map[string]string) keyspace.JobSpec {
	return keyspace.JobSpec{
		App:            app,
		Release:        "r1",
		ReleaseVersion: 1,
		Type:           "web",
		Image:          e.image,
		Env:            envVars,
		Port:           webPort,
		Service:        app + "-web",
		Health:         keyspace.HealthCheck{Path: "/healthz", Interval: 200 * time.Millisecond, Timeout: time.Second},
		Resources:      keyspace.Resources{Memory: 64 << 20, CPUShares: 256, PIDs: 100},
		StopTimeout:    3 * time.Second,
	}
}

func (e *env) assign(hostID, jobID string, spec keyspace.JobSpec) {
	e.t.Helper()
	val, err := json.Marshal(keyspace.Assignment{JobID: jobID, HostID: hostID, Spec: spec, Index: 1, CreatedAt: time.Now().UTC()})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.etcd.Put(e.t.Context(), e.space.Assignment(hostID, jobID), string(val)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) unassign(hostID, jobID string) {
	e.t.Helper()
	if _, err := e.etcd.Delete(e.t.Context(), e.space.Assignment(hostID, jobID)); err != nil {
		e.t.Fatal(err)
	}
}

// jobState reads a job's state; ok is false when the key is absent.
func (e *env) jobState(id string) (keyspace.JobState, bool) {
	e.t.Helper()
	resp, err := e.etcd.Get(e.t.Context(), e.space.Job(id))
	if err != nil {
		e.t.Fatal(err)
	}
	var st keyspace.JobState
	if len(resp.Kvs) == 0 {
		return st, false
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		e.t.Fatal(err)
	}
	return st, true
}

// waitState waits until the job is in state want and returns that state.
func (e *env) waitState(id, want string) keyspace.JobState {
	e.t.Helper()
	var st keyspace.JobState
	waitFor(e.t, "job "+id+" "+want, func() (bool, string) {
		var ok bool
		st, ok = e.jobState(id)
		return ok && st.State == want, fmt.Sprintf("%+v (present %v)", st, ok)
	})
	return st
}

func (e *env) hostRecord(id string) (keyspace.Host, int64, bool) {
	e.t.Helper()
	resp, err := e.etcd.Get(e.t.Context(), e.space.Host(id))
	if err != nil {
		e.t.Fatal(err)
	}
	var h keyspace.Host
	if len(resp.Kvs) == 0 {
		return h, 0, false
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &h); err != nil {
		e.t.Fatal(err)
	}
	return h, resp.Kvs[0].Lease, true
}

// api waits for the host record and returns a client of its API.
func (e *env) api(hostID string) *hostclient.Client {
	e.t.Helper()
	var h keyspace.Host
	waitFor(e.t, "host record of "+hostID, func() (bool, string) {
		var ok bool
		h, _, ok = e.hostRecord(hostID)
		return ok, "absent"
	})
	return hostclient.New(h.APIURL, token)
}

func (e *env) instances(service string) []discovery.Instance {
	e.t.Helper()
	list, _, err := e.disc.List(e.t.Context(), service)
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

func (e *env) inspect(id string) container.InspectResponse {
	e.t.Helper()
	info, err := e.docker.ContainerInspect(e.t.Context(), id)
	if err != nil {
		e.t.Fatalf("inspect container %s: %v", id, err)
	}
	return info
}

func (e *env) containers(cluster string) []container.Summary {
	e.t.Helper()
	list, err := e.docker.ContainerList(e.t.Context(), container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster)),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

// get fetches url once, without retries.
func get(url string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func testStartHTTPCheck(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	spec := e.webSpec("shop", map[string]string{"GREETING": "hi", "READY_AFTER": "1500ms"})
	e.assign("h1", "job-http", spec)

	// The job must not be up while its health path still fails.
	sawUnready := false
	var st keyspace.JobState
	waitFor(t, "job up", func() (bool, string) {
		var ok bool
		st, ok = e.jobState("job-http")
		if ok && st.State == keyspace.StateStarting && st.Addr != "" {
			if code, _, err := get("http://" + st.Addr + "/healthz"); err == nil && code == http.StatusServiceUnavailable {
				sawUnready = true
				if n := len(e.instances(spec.Service)); n != 0 {
					t.Errorf("%d instances registered while the health check fails", n)
				}
			}
		}
		return ok && st.State == keyspace.StateUp, fmt.Sprintf("%+v", st)
	})
	if code, _, err := get("http://" + st.Addr + "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("job up but its health path answers %d, %v", code, err)
	}
	if !sawUnready {
		t.Errorf("never saw the job starting while its health path answered 503")
	}
	if !strings.HasPrefix(st.Addr, "127.0.0.1:") || st.ContainerID == "" || st.HostID != "h1" || st.App != "shop" || st.StartedAt.IsZero() {
		t.Errorf("job state = %+v", st)
	}

	insts := e.instances(spec.Service)
	if len(insts) != 1 {
		t.Fatalf("instances of %s = %+v, want one", spec.Service, insts)
	}
	inst := insts[0]
	wantMeta := map[string]string{"app": "shop", "release": "r1", "type": "web", "host": "h1"}
	if inst.ID != "job-http" || inst.Addr != st.Addr || fmt.Sprint(inst.Meta) != fmt.Sprint(wantMeta) {
		t.Errorf("instance = %+v, want ID job-http, addr %s, meta %v", inst, st.Addr, wantMeta)
	}
	if code, body, err := get("http://" + inst.Addr + "/"); err != nil || code != http.StatusOK || !strings.HasPrefix(body, "hello from") {
		t.Errorf("GET / of the instance: %d %q %v", code, body, err)
	}

	info := e.inspect(st.ContainerID)
	wantLabels := map[string]string{
		keyspace.LabelCluster: e.cluster, keyspace.LabelJob: "job-http", keyspace.LabelApp: "shop",
		keyspace.LabelRelease: "r1", keyspace.LabelType: "web", host.LabelHost: "h1", host.LabelService: "shop-web",
	}
	for k, v := range wantLabels {
		if got := info.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q, want %q", k, got, v)
		}
	}
	hc := info.HostConfig
	checks := []struct {
		what string
		ok   bool
	}{
		{"name gantry-<cluster>-shop-web-<job>", strings.HasPrefix(info.Name, "/gantry-"+e.cluster+"-shop-web-")},
		{"memory limit 64 MiB", hc.Memory == 64<<20},
		{"cpu shares 256", hc.CPUShares == 256},
		{"pids limit 100", hc.PidsLimit != nil && *hc.PidsLimit == 100},
		{"not privileged", !hc.Privileged},
		{"no added capabilities", len(hc.CapAdd) == 0},
		{"NET_RAW dropped", slices.Contains(hc.CapDrop, "NET_RAW") || slices.Contains(hc.CapDrop, "CAP_NET_RAW")},
		{"no-new-privileges", slices.Contains(hc.SecurityOpt, "no-new-privileges")},
		{"no binds", len(hc.Binds) == 0 && len(hc.Mounts) == 0},
		{"no mounts", len(info.Mounts) == 0},
		{"no restart policy", hc.RestartPolicy.Name == "" || hc.RestartPolicy.Name == container.RestartPolicyDisabled},
		{"PORT set", slices.Contains(info.Config.Env, fmt.Sprintf("PORT=%d", webPort))},
		{"spec env set", slices.Contains(info.Config.Env, "GREETING=hi")},
		{"published on 127.0.0.1", len(hc.PortBindings) == 1 && hc.PortBindings[nat.Port(fmt.Sprintf("%d/tcp", webPort))][0].HostIP == "127.0.0.1"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("container: want %s; config %+v, host config %+v", c.what, info.Config, hc)
		}
	}

	jobs, err := e.api("h1").ListJobs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].JobID != "job-http" || jobs[0].State != keyspace.StateUp || jobs[0].Image != e.image || jobs[0].Service != "shop-web" {
		t.Errorf("ListJobs = %+v", jobs)
	}
	h, _, _ := e.hostRecord("h1")
	if !h.Healthy || h.CPU <= 0 || h.Memory <= 0 || h.Addr != "127.0.0.1" || h.Version != "test" || h.LogURL != "http://127.0.0.1:7072" {
		t.Errorf("host record = %+v", h)
	}
}

func testStartTCPCheck(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	spec := e.webSpec("tcp", map[string]string{"LISTEN_AFTER": "1500ms"})
	spec.Health.Path = ""
	e.assign("h1", "job-tcp", spec)

	sawClosed := false
	var st keyspace.JobState
	waitFor(t, "job up", func() (bool, string) {
		var ok bool
		st, ok = e.jobState("job-tcp")
		if ok && st.State == keyspace.StateStarting && st.Addr != "" {
			if _, _, err := get("http://" + st.Addr + "/"); err != nil {
				sawClosed = true
			}
		}
		return ok && st.State == keyspace.StateUp, fmt.Sprintf("%+v", st)
	})
	if code, _, err := get("http://" + st.Addr + "/"); err != nil || code != http.StatusOK {
		t.Errorf("job up but GET / answers %d, %v", code, err)
	}
	if !sawClosed {
		t.Errorf("never saw the job starting while its port did not answer")
	}
	if insts := e.instances(spec.Service); len(insts) != 1 || insts[0].Addr != st.Addr {
		t.Errorf("instances = %+v, want one at %s", insts, st.Addr)
	}
}

func testImageMissing(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	spec := e.webSpec("ghost", nil)
	spec.Image = "gantry-test/absent:" + randomHex(t, 4)
	e.assign("h1", "job-ghost", spec)

	st := e.waitState("job-ghost", keyspace.StateCrashed)
	if st.Error != "image not found: "+spec.Image || st.ContainerID != "" {
		t.Errorf("state = %+v, want error %q and no container", st, "image not found: "+spec.Image)
	}
	if n := len(e.containers(e.cluster)); n != 0 {
		t.Errorf("%d containers, want none", n)
	}
	e.unassign("h1", "job-ghost")
	waitFor(t, "job key deleted", func() (bool, string) {
		_, ok := e.jobState("job-ghost")
		return !ok, "still present"
	})
}

func testStop(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	spec := e.webSpec("stopper", nil)
	e.assign("h1", "job-stop", spec)
	up := e.waitState("job-stop", keyspace.StateUp)

	logs, err := e.api("h1").Logs(t.Context(), "job-stop", hostclient.LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()

	// Record every change of the job's state and discovery entry in
	// revision order.
	wctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	instKey, jobKey := e.space.Instance(spec.Service, "job-stop"), e.space.Job("job-stop")
	wch := e.etcd.Watch(wctx, e.space.Root(), clientv3.WithPrefix(), clientv3.WithRev(e.currentRev()+1))

	e.unassign("h1", "job-stop")

	var seq []string
	for done := false; !done; {
		select {
		case wr := <-wch:
			for _, ev := range wr.Events {
				switch key := string(ev.Kv.Key); {
				case key == instKey && ev.Type == clientv3.EventTypeDelete:
					seq = append(seq, "deregistered")
				case key == jobKey && ev.Type == clientv3.EventTypeDelete:
					seq = append(seq, "deleted")
					done = true
				case key == jobKey:
					var st keyspace.JobState
					if err := json.Unmarshal(ev.Kv.Value, &st); err != nil {
						t.Fatal(err)
					}
					seq = append(seq, st.State)
					if st.State == keyspace.StateDown && (st.ExitCode == nil || *st.ExitCode != 0) {
						t.Errorf("down with exit code %v, want 0 (stopped by SIGTERM)", st.ExitCode)
					}
				}
			}
		case <-time.After(waitTimeout):
			t.Fatalf("job key not deleted; changes so far: %v", seq)
		}
	}
	if want := []string{"deregistered", "stopping", "down", "deleted"}; !slices.Equal(seq, want) {
		t.Errorf("changes = %v, want %v", seq, want)
	}

	var lines []string
	for {
		l, err := logs.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("log stream: %v", err)
			}
			break
		}
		lines = append(lines, l.Text)
	}
	if !slices.Contains(lines, "got SIGTERM") {
		t.Errorf("followed log %q lacks the SIGTERM the container got", lines)
	}
	if _, err := e.docker.ContainerInspect(t.Context(), up.ContainerID); !cerrdefs.IsNotFound(err) {
		t.Errorf("container still there after its job stopped (inspect: %v)", err)
	}
}

// testSlowStop stops a job that ignores SIGTERM next to one that does not:
// the first is killed after its stop timeout, and does not hold up the
// second.
func testSlowStop(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	slow := e.webSpec("slow", map[string]string{"IGNORE_TERM": "1"})
	slow.StopTimeout = 4 * time.Second
	e.assign("h1", "job-slow", slow)
	e.assign("h1", "job-quick", e.webSpec("quick", nil))
	e.waitState("job-slow", keyspace.StateUp)
	e.waitState("job-quick", keyspace.StateUp)

	history := e.history("job-slow")
	e.unassign("h1", "job-slow")
	e.waitState("job-slow", keyspace.StateStopping)
	e.unassign("h1", "job-quick")
	waitFor(t, "quick job removed", func() (bool, string) {
		st, ok := e.jobState("job-quick")
		return !ok, fmt.Sprintf("%+v", st)
	})
	if st, ok := e.jobState("job-slow"); !ok || st.State != keyspace.StateStopping {
		t.Errorf("slow job = %+v (present %v), want still stopping while the quick one is gone", st, ok)
	}
	var down *keyspace.JobState
	waitFor(t, "slow job down", func() (bool, string) {
		states := history()
		for _, st := range states {
			if st.State == keyspace.StateDown {
				down = &st
			}
		}
		return down != nil, fmt.Sprintf("%+v", states)
	})
	if down.ExitCode == nil || *down.ExitCode != 137 {
		t.Errorf("slow job went down as %+v, want exit code 137 (SIGKILL after the stop timeout)", down)
	}
	waitFor(t, "slow job removed", func() (bool, string) {
		st, ok := e.jobState("job-slow")
		return !ok, fmt.Sprintf("%+v", st)
	})
}

// history records every state written to a job's key from now on; the
// returned function gives the states so far.
func (e *env) history(id string) func() []keyspace.JobState {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	wch := e.etcd.Watch(ctx, e.space.Job(id), clientv3.WithRev(e.currentRev()+1))
	var mu sync.Mutex
	var states []keyspace.JobState
	go func() {
		for wr := range wch {
			for _, ev := range wr.Events {
				var st keyspace.JobState
				if ev.Type != clientv3.EventTypePut || json.Unmarshal(ev.Kv.Value, &st) != nil {
					continue
				}
				mu.Lock()
				states = append(states, st)
				mu.Unlock()
			}
		}
	}()
	return func() []keyspace.JobState {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(states)
	}
}

func (e *env) currentRev() int64 {
	e.t.Helper()
	resp, err := e.etcd.Get(e.t.Context(), "/")
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

func testCrash(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))

	t.Run("killed", func(t *testing.T) {
		spec := e.webSpec("victim", nil)
		e.assign("h1", "job-kill", spec)
		up := e.waitState("job-kill", keyspace.StateUp)
		if err := e.docker.ContainerKill(t.Context(), up.ContainerID, "KILL"); err != nil {
			t.Fatal(err)
		}
		st := e.waitState("job-kill", keyspace.StateCrashed)
		if st.ExitCode == nil || *st.ExitCode != 137 {
			t.Errorf("exit code = %v, want 137", st.ExitCode)
		}
		if !slices.Contains(st.LastLines, fmt.Sprintf("listening on :%d", webPort)) {
			t.Errorf("last lines = %q, want the server's output", st.LastLines)
		}
		if n := len(e.instances(spec.Service)); n != 0 {
			t.Errorf("%d instances of a crashed job", n)
		}
		if info := e.inspect(up.ContainerID); info.State.Running {
			t.Errorf("crashed container running")
		}
	})

	t.Run("cannot start", func(t *testing.T) {
		spec := e.webSpec("broken", nil)
		spec.Entrypoint = []string{"/no/such/binary"}
		e.assign("h1", "job-broken", spec)
		st := e.waitState("job-broken", keyspace.StateCrashed)
		if st.ContainerID == "" || !strings.Contains(st.Error, "cannot start container") || st.ExitCode == nil || *st.ExitCode == 0 {
			t.Errorf("state = %+v, want a start error and a non-zero exit code", st)
		}
	})

	t.Run("exited", func(t *testing.T) {
		spec := e.webSpec("quitter", map[string]string{"EXIT_AFTER": "300ms", "EXIT_CODE": "3"})
		e.assign("h1", "job-exit", spec)
		st := e.waitState("job-exit", keyspace.StateCrashed)
		if st.ExitCode == nil || *st.ExitCode != 3 {
			t.Errorf("exit code = %v, want 3", st.ExitCode)
		}
		want := make([]string, 0, 20)
		for i := 11; i <= 30; i++ {
			want = append(want, fmt.Sprintf("last words %d", i))
		}
		if !slices.Equal(st.LastLines, want) {
			t.Errorf("last lines = %q, want %q", st.LastLines, want)
		}
		// The container stays for its logs until the assignment goes.
		if info := e.inspect(st.ContainerID); info.State.Running {
			t.Errorf("exited container running")
		}
		e.unassign("h1", "job-exit")
		waitFor(t, "crashed job removed", func() (bool, string) {
			_, err := e.docker.ContainerInspect(t.Context(), st.ContainerID)
			_, ok := e.jobState("job-exit")
			return cerrdefs.IsNotFound(err) && !ok, fmt.Sprintf("inspect: %v, key present: %v", err, ok)
		})
	})
}

func testFailingHealthCheck(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	spec := e.webSpec("flaky", nil)
	e.assign("h1", "job-flaky", spec)
	up := e.waitState("job-flaky", keyspace.StateUp)
	if n := len(e.instances(spec.Service)); n != 1 {
		t.Fatalf("%d instances, want 1", n)
	}
	if code, _, err := get("http://" + up.Addr + "/sick"); err != nil || code != http.StatusOK {
		t.Fatalf("GET /sick: %d %v", code, err)
	}
	st := e.waitState("job-flaky", keyspace.StateStarting)
	if n := len(e.instances(spec.Service)); n != 0 {
		t.Errorf("%d instances of a job failing its health check, want 0", n)
	}
	if st.ContainerID != up.ContainerID || !e.inspect(up.ContainerID).State.Running {
		t.Errorf("the failing job's container should keep running")
	}
}

func testRestart(t *testing.T, f *fixture) {
	e := f.env(t)
	cfg := e.config("h1")
	first := e.start(cfg)
	web := e.webSpec("keeper", nil)
	worker := e.webSpec("keeper", nil)
	worker.Type, worker.Port, worker.Service = "worker", 0, ""
	e.assign("h1", "job-web", web)
	e.assign("h1", "job-worker", worker)
	e.assign("h1", "job-gone", worker)
	webBefore := e.waitState("job-web", keyspace.StateUp)
	workerBefore := e.waitState("job-worker", keyspace.StateUp)
	gone := e.waitState("job-gone", keyspace.StateUp)
	hostBefore, leaseBefore, _ := e.hostRecord("h1")
	startedBefore := map[string]string{}
	for _, id := range []string{webBefore.ContainerID, workerBefore.ContainerID} {
		startedBefore[id] = e.inspect(id).State.StartedAt
	}

	first.stop(t)
	for id := range startedBefore {
		if !e.inspect(id).State.Running {
			t.Fatalf("container %s stopped with the agent", id)
		}
	}
	if _, lease, ok := e.hostRecord("h1"); !ok || lease != leaseBefore {
		t.Fatalf("host record gone or re-leased after the agent stopped (present %v, lease %x, was %x)", ok, lease, leaseBefore)
	}
	// While the agent is down, one job goes away with its container: its
	// key, left under the reused lease, must not outlive the restart.
	e.unassign("h1", "job-gone")
	if err := e.docker.ContainerRemove(t.Context(), gone.ContainerID, container.RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}

	e.start(cfg)
	waitFor(t, "the new run's host record", func() (bool, string) {
		h, _, _ := e.hostRecord("h1")
		return h.StartedAt.After(hostBefore.StartedAt) && h.Healthy, fmt.Sprintf("%+v", h)
	})
	if _, lease, _ := e.hostRecord("h1"); lease != leaseBefore {
		t.Errorf("lease %x after restart, want the saved %x reused", lease, leaseBefore)
	}
	// The host record comes first; the jobs are adopted right after it.
	api := e.api("h1")
	for _, before := range []keyspace.JobState{webBefore, workerBefore} {
		waitFor(t, "job "+before.JobID+" adopted, up in container "+before.ContainerID, func() (bool, string) {
			jobs, err := api.ListJobs(t.Context())
			if err != nil {
				return false, err.Error()
			}
			var st hostclient.Job
			for _, j := range jobs {
				if j.JobID == before.JobID {
					st = j
				}
			}
			return st.ContainerID == before.ContainerID && st.State == keyspace.StateUp, fmt.Sprintf("%+v", st.JobState)
		})
	}
	for id, started := range startedBefore {
		info := e.inspect(id)
		if !info.State.Running || info.State.StartedAt != started {
			t.Errorf("container %s restarted: running %v, started %s, was %s", id, info.State.Running, info.State.StartedAt, started)
		}
	}
	if n := len(e.containers(e.cluster)); n != 2 {
		t.Errorf("%d containers after restart, want the same 2", n)
	}
	waitFor(t, "the vanished job's key deleted", func() (bool, string) {
		st, ok := e.jobState("job-gone")
		return !ok, fmt.Sprintf("%+v", st)
	})
	waitFor(t, "web instance registered", func() (bool, string) {
		insts := e.instances(web.Service)
		return len(insts) == 1 && insts[0].Addr == webBefore.Addr, fmt.Sprintf("%+v", insts)
	})
	if code, _, err := get("http://" + webBefore.Addr + "/"); err != nil || code != http.StatusOK {
		t.Errorf("adopted web job: GET / = %d, %v", code, err)
	}

	// The adopted job's logs are there, and it still stops on removal.
	var texts []string
	for _, l := range readAll(t, e.api("h1"), "job-web", hostclient.LogOptions{}) {
		texts = append(texts, l.Text)
	}
	if !slices.Contains(texts, "starting") || !slices.Contains(texts, fmt.Sprintf("listening on :%d", webPort)) {
		t.Errorf("log of the adopted job = %q, want the output of its start", texts)
	}
	e.unassign("h1", "job-web")
	waitFor(t, "adopted job removed", func() (bool, string) {
		_, err := e.docker.ContainerInspect(t.Context(), webBefore.ContainerID)
		return cerrdefs.IsNotFound(err), fmt.Sprint(err)
	})
}

// testRestartKeepsStates restarts the agent over an up job and a crashed
// one: the new run adopts both without changing what their states say.
// The up job is up since the same time, and the crash keeps its exit
// code, its last lines and its time, from which the scheduler counts the
// back-off before the job's replacement.
func testRestartKeepsStates(t *testing.T, f *fixture) {
	e := f.env(t)
	cfg := e.config("h1")
	first := e.start(cfg)
	e.assign("h1", "job-web", e.webSpec("keeper", nil))
	e.assign("h1", "job-quit", e.webSpec("quitter", map[string]string{"EXIT_AFTER": "300ms", "EXIT_CODE": "3"}))
	before := map[string]keyspace.JobState{
		"job-web":  e.waitState("job-web", keyspace.StateUp),
		"job-quit": e.waitState("job-quit", keyspace.StateCrashed),
	}
	first.stop(t)

	written := map[string]func() []keyspace.JobState{}
	for id := range before {
		written[id] = e.history(id)
	}
	e.start(cfg)
	// A new run writes each job's state once it has inspected its
	// container; every state it writes is the one before.
	check := func() {
		t.Helper()
		for id, want := range before {
			for _, st := range written[id]() {
				if got, want := mustJSON(t, st), mustJSON(t, want); got != want {
					t.Errorf("job %s after the restart:\n%s\nwant the state before:\n%s", id, got, want)
				}
			}
		}
	}
	waitFor(t, "both jobs' states written by the new run", func() (bool, string) {
		return len(written["job-web"]()) > 0 && len(written["job-quit"]()) > 0,
			fmt.Sprintf("web %d, quitter %d", len(written["job-web"]()), len(written["job-quit"]()))
	})
	check()
	waitFor(t, "web instance registered", func() (bool, string) {
		insts := e.instances("keeper-web")
		return len(insts) == 1 && insts[0].Addr == before["job-web"].Addr, fmt.Sprintf("%+v", insts)
	})
	check()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testOrphans(t *testing.T, f *fixture) {
	e := f.env(t)
	other := e.cluster + "x"
	testenv.CleanupContainers(t, e.docker, other)
	run := func(name string, labels map[string]string) string {
		t.Helper()
		resp, err := e.docker.ContainerCreate(t.Context(), &container.Config{Image: e.image, Labels: labels}, nil, nil, nil, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.docker.ContainerStart(t.Context(), resp.ID, container.StartOptions{}); err != nil {
			t.Fatal(err)
		}
		return resp.ID
	}
	orphan := run("", map[string]string{
		keyspace.LabelCluster: e.cluster, host.LabelHost: "h1", keyspace.LabelJob: "job-orphan",
		keyspace.LabelApp: "old", keyspace.LabelType: "web",
	})
	foreign := run("", map[string]string{
		keyspace.LabelCluster: other, host.LabelHost: "h1", keyspace.LabelJob: "job-orphan",
		keyspace.LabelApp: "old", keyspace.LabelType: "web",
	})
	otherHost := run("", map[string]string{
		keyspace.LabelCluster: e.cluster, host.LabelHost: "h2", keyspace.LabelJob: "job-elsewhere",
		keyspace.LabelApp: "old", keyspace.LabelType: "web",
	})

	e.start(e.config("h1"))
	waitFor(t, "orphan removed", func() (bool, string) {
		_, err := e.docker.ContainerInspect(t.Context(), orphan)
		return cerrdefs.IsNotFound(err), fmt.Sprint(err)
	})
	for _, id := range []string{foreign, otherHost} {
		if info := e.inspect(id); !info.State.Running {
			t.Errorf("container %s of another cluster or host was touched: %+v", id, info.State)
		}
	}
}

func testLogsAPI(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	spec := e.webSpec("chatty", nil)
	e.assign("h1", "job-logs", spec)
	up := e.waitState("job-logs", keyspace.StateUp)
	api := e.api("h1")

	t.Run("unauthorized", func(t *testing.T) {
		h, _, _ := e.hostRecord("h1")
		for name, tok := range map[string]string{"wrong": "nope", "empty": ""} {
			bad := hostclient.New(h.APIURL, tok)
			if _, err := bad.ListJobs(t.Context()); !errors.Is(err, hostclient.ErrUnauthorized) {
				t.Errorf("%s token: ListJobs error = %v, want unauthorized", name, err)
			}
			if _, err := bad.Logs(t.Context(), "job-logs", hostclient.LogOptions{}); !errors.Is(err, hostclient.ErrUnauthorized) {
				t.Errorf("%s token: Logs error = %v, want unauthorized", name, err)
			}
			if err := bad.KillJob(t.Context(), "job-logs"); !errors.Is(err, hostclient.ErrUnauthorized) {
				t.Errorf("%s token: KillJob error = %v, want unauthorized", name, err)
			}
		}
		if err := bad(h.APIURL).Health(t.Context()); err != nil {
			t.Errorf("/healthz needs no token, got %v", err)
		}
	})

	t.Run("routes", func(t *testing.T) {
		h, _, _ := e.hostRecord("h1")
		for _, tc := range []struct {
			method, path string
			status       int
			code         string
		}{
			{http.MethodGet, "/v1/nope", http.StatusNotFound, "not_found"},
			{http.MethodDelete, "/v1/jobs", http.StatusMethodNotAllowed, "method_not_allowed"},
			{http.MethodGet, "/v1/jobs/job-logs/log?lines=-1", http.StatusBadRequest, "bad_request"},
			{http.MethodGet, "/v1/jobs/job-logs/log?follow=maybe", http.StatusBadRequest, "bad_request"},
		} {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, h.APIURL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body hostclient.ErrorBody
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || err != nil || body.Error == nil || body.Error.Code != tc.code {
				t.Errorf("%s %s = %d %+v (%v), want %d %s", tc.method, tc.path, resp.StatusCode, body.Error, err, tc.status, tc.code)
			}
		}
	})

	t.Run("unknown job", func(t *testing.T) {
		if _, err := api.Logs(t.Context(), "nope", hostclient.LogOptions{}); !errors.Is(err, hostclient.ErrJobNotFound) {
			t.Errorf("Logs of an unknown job: %v, want job not found", err)
		}
		if err := api.KillJob(t.Context(), "nope"); !errors.Is(err, hostclient.ErrJobNotFound) {
			t.Errorf("KillJob of an unknown job: %v, want job not found", err)
		}
	})

	t.Run("tail", func(t *testing.T) {
		all := readAll(t, api, "job-logs", hostclient.LogOptions{})
		var stdout, stderr bool
		for _, l := range all {
			stdout = stdout || l.Stream == hostclient.StreamStdout && l.Text == "starting"
			stderr = stderr || l.Stream == hostclient.StreamStderr && l.Text == "stderr says hi"
			if l.Time.IsZero() {
				t.Errorf("line without a time: %+v", l)
			}
		}
		if len(all) < 3 || !stdout || !stderr {
			t.Errorf("log = %+v, want starting on stdout and the stderr line", all)
		}
		last := readAll(t, api, "job-logs", hostclient.LogOptions{Lines: 1})
		if len(last) != 1 || last[0] != all[len(all)-1] {
			t.Errorf("lines=1 gave %+v, want the last line %+v", last, all[len(all)-1])
		}
	})

	t.Run("follow then kill", func(t *testing.T) {
		stream, err := api.Logs(t.Context(), "job-logs", hostclient.LogOptions{Follow: true, Lines: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		msg := "hello-" + randomHex(t, 4)
		if code, _, err := get("http://" + up.Addr + "/say?msg=" + msg); err != nil || code != http.StatusOK {
			t.Fatalf("GET /say: %d %v", code, err)
		}
		for {
			l, err := stream.Next()
			if err != nil {
				t.Fatalf("follow ended before %q arrived: %v", msg, err)
			}
			if l.Text == msg {
				break
			}
		}
		if err := api.KillJob(t.Context(), "job-logs"); err != nil {
			t.Fatal(err)
		}
		st := e.waitState("job-logs", keyspace.StateCrashed)
		if st.ExitCode == nil || *st.ExitCode != 137 {
			t.Errorf("exit code after kill = %v, want 137", st.ExitCode)
		}
		for {
			if _, err := stream.Next(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Errorf("follow stream ended with %v, want EOF", err)
				}
				break
			}
		}
		if err := api.KillJob(t.Context(), "job-logs"); !errors.Is(err, hostclient.ErrConflict) {
			t.Errorf("killing a dead job: %v, want conflict", err)
		}
	})
}

func bad(url string) *hostclient.Client { return hostclient.New(url, "") }

func readAll(t *testing.T, api *hostclient.Client, id string, opts hostclient.LogOptions) []hostclient.LogLine {
	t.Helper()
	stream, err := api.Logs(t.Context(), id, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var out []hostclient.LogLine
	for {
		l, err := stream.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
}

func testDockerUnreachable(t *testing.T, f *fixture) {
	e := f.env(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	dead, err := client.NewClientWithOpts(client.WithHost("unix://"+sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	cfg := e.config("h-dead")
	cfg.Docker = dead
	a := e.start(cfg)
	spec := e.webSpec("patient", nil)
	e.assign("h-dead", "job-patient", spec)

	waitFor(t, "host reported unhealthy", func() (bool, string) {
		h, _, ok := e.hostRecord("h-dead")
		return ok && !h.Healthy && strings.Contains(h.Reason, "docker unreachable"), fmt.Sprintf("%+v", h)
	})
	if st, ok := e.jobState("job-patient"); ok && st.State != keyspace.StateStarting {
		t.Errorf("job state while Docker is unreachable = %+v, want starting or absent", st)
	}
	select {
	case err := <-a.done:
		t.Fatalf("Run returned while Docker was unreachable: %v", err)
	default:
	}

	// Docker comes back: the socket now leads to the real engine.
	proxyDocker(t, sock, e.docker.DaemonHost())
	waitFor(t, "host healthy again", func() (bool, string) {
		h, _, _ := e.hostRecord("h-dead")
		return h.Healthy && h.Reason == "" && h.CPU > 0 && h.Memory > 0, fmt.Sprintf("%+v", h)
	})
	e.waitState("job-patient", keyspace.StateUp)
}

// proxyDocker serves a unix socket at path that forwards every connection
// to the Docker Engine at daemonHost, until the end of the test.
func proxyDocker(t *testing.T, path, daemonHost string) {
	t.Helper()
	network, addr, ok := strings.Cut(daemonHost, "://")
	if !ok || (network != "unix" && network != "tcp") {
		t.Fatalf("cannot proxy Docker at %q", daemonHost)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); os.Remove(path) })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial(network, addr)
				if err != nil {
					return
				}
				defer out.Close()
				go func() {
					io.Copy(out, in)
					if c, ok := out.(interface{ CloseWrite() error }); ok {
						c.CloseWrite()
					}
				}()
				io.Copy(in, out)
			}()
		}
	}()
}

func testLeaseLost(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	spec := e.webSpec("phoenix", nil)
	e.assign("h1", "job-phoenix", spec)
	up := e.waitState("job-phoenix", keyspace.StateUp)
	_, lease, _ := e.hostRecord("h1")

	if _, err := e.etcd.Revoke(t.Context(), clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "host, job and instance published under a new lease", func() (bool, string) {
		h, newLease, ok := e.hostRecord("h1")
		st, stOK := e.jobState("job-phoenix")
		insts := e.instances(spec.Service)
		return ok && h.Healthy && newLease != lease && stOK && st.State == keyspace.StateUp &&
				st.ContainerID == up.ContainerID && len(insts) == 1,
			fmt.Sprintf("host %v lease %x, job %+v, instances %+v", ok, newLease, st, insts)
	})
}
