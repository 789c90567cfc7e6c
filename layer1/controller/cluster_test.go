package controller_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// startLayer0 runs a scheduler and one host agent of a's cluster on the
// real Docker Engine until the test ends.
func startLayer0(t *testing.T, a *api, docker *dockerclient.Client, logs io.Writer) {
	t.Helper()
	startLayer0With(t, a, docker, logs, "")
}

// startLayer0With is startLayer0 with the gantryd binary that the host
// agent mounts into jobs ("" for the test binary, for jobs that need none).
func startLayer0With(t *testing.T, a *api, docker *dockerclient.Client, logs io.Writer, gantryd string) {
	t.Helper()
	startLayer0Hosts(t, a, docker, logs, gantryd, "host-1")
}

// startLayer0Hosts runs a scheduler and a host agent of each ID in ids, all
// on the real Docker Engine, until the test ends.
func startLayer0Hosts(t *testing.T, a *api, docker *dockerclient.Client, logs io.Writer, gantryd string, ids ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 1+len(ids))
	go func() {
		defer func() { done <- struct{}{} }()
		if err := scheduler.Run(ctx, scheduler.Config{Cluster: a.space.Cluster(), Etcd: a.etcd, ID: "sched-1",
			Logger: slog.New(slog.NewTextHandler(logs, nil)).With("component", "scheduler")}); err != nil {
			t.Errorf("scheduler: %v", err)
		}
	}()
	for _, id := range ids {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := host.Run(ctx, host.Config{
				ID: id, Cluster: a.space.Cluster(), Etcd: a.etcd, Docker: docker,
				APIAddr: "127.0.0.1:0", APIToken: a.cfg.HostToken, StateDir: t.TempDir(), GantrydPath: gantryd,
				LeaseTTL: 2 * time.Second, DrainDelay: 100 * time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(logs, nil)).With("component", "host", "host", id),
			}); err != nil {
				t.Errorf("host agent %s: %v", id, err)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range 1 + len(ids) {
			<-done
		}
	})
}

// get returns the body of GET http://addr/, or "" when it fails.
func get(addr string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// upJobs returns the jobs of app that are up, by ID.
func upJobs(t *testing.T, a *api, app string) map[string]types.Job {
	t.Helper()
	jobs, err := a.c.ListJobs(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.Job{}
	for _, j := range jobs {
		if j.State == types.JobUp {
			out[j.ID] = j
		}
	}
	return out
}

// TestRunningApp runs an app through the controller on a real scheduler,
// host agent and Docker Engine: release, scale, kill, a release whose image
// is missing, and deletion.
func TestRunningApp(t *testing.T) {
	t.Parallel()
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, "testdata/web")
	cluster := fmt.Sprintf("ct-%d", time.Now().UnixNano()%1e9)
	testenv.CleanupContainers(t, docker, cluster)
	logs := &syncBuffer{}
	a := newAPI(t, func(c *controller.Config) {
		c.Cluster = cluster
		c.DeployTimeout = 10 * time.Second
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	startLayer0(t, a, docker, logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"GREETING": ptr("hello from v1")}); err != nil {
		t.Fatal(err)
	}
	// The command is the container's argv after the image's entrypoint.
	if _, err := a.c.CreateRelease(ctx, "demo", types.ReleaseRequest{Image: image, Processes: map[string]types.Process{
		"web": {Command: "serve", HealthPath: "/healthz"},
	}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web.1 to be up and answer", func() bool {
		up := slices.Collect(maps.Values(upJobs(t, a, "demo")))
		return len(up) == 1 && up[0].Index == 1 && up[0].Release == 1 && up[0].Host == "host-1" &&
			!up[0].StartedAt.IsZero() && get(up[0].Addr) == "hello from v1"
	})

	if _, err := a.c.Scale(ctx, "demo", map[string]int{"web": 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two jobs up", func() bool { return len(upJobs(t, a, "demo")) == 2 })

	// A killed job is replaced with one of the same index.
	var victim types.Job
	for _, j := range upJobs(t, a, "demo") {
		if j.Index == 1 {
			victim = j
		}
	}
	if err := a.c.KillJob(ctx, "demo", victim.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the killed job to be replaced", func() bool {
		up := upJobs(t, a, "demo")
		if _, ok := up[victim.ID]; ok || len(up) != 2 {
			return false
		}
		for _, j := range up {
			if j.Index == 1 {
				return true
			}
		}
		return false
	})

	// A release of an image the engine lacks crashes; the deployment
	// fails and v1 keeps serving.
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("gantry-test/missing:none")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v2's job to crash with image not found", func() bool {
		jobs, err := a.c.ListJobs(ctx, "demo")
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.Release == 2 && j.State == types.JobCrashed && j.Error == "image not found: gantry-test/missing:none" {
				return true
			}
		}
		return false
	})
	waitFor(t, "v2's deployment to fail", func() bool {
		return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v1/web": 2})
	})
	if app, _ := a.c.GetApp(ctx, "demo"); app.Release != 1 {
		t.Errorf("current release = %d, want 1", app.Release)
	}
	if up := upJobs(t, a, "demo"); len(up) != 2 {
		t.Errorf("v1 jobs up after the failed deployment: %d, want 2", len(up))
	}

	// Deleting the app stops its containers.
	if err := a.c.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the app's containers to go", func() bool {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		list, err := docker.ContainerList(lctx, container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", keyspace.LabelCluster+"="+cluster),
			filters.Arg("label", keyspace.LabelApp+"=demo"),
		)})
		if err != nil {
			t.Fatal(err)
		}
		return len(list) == 0
	})
}
