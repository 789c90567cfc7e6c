package controller_test

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestPerHostDeploy runs a system app with a per-host process on two
// host agents (one Docker Engine) with the real scheduler: one job on
// each host; a new release replaces them with each host keeping a job up
// throughout, and the old release's jobs go once the new release has one
// up on both hosts; draining a host stops its job and moves nothing,
// undraining brings it back; a release that fails rolls back and the
// running release keeps its job on each host.
func TestPerHostDeploy(t *testing.T) {
	t.Parallel()
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, "testdata/web")
	cluster := fmt.Sprintf("ct-%d", time.Now().UnixNano()%1e9)
	testenv.CleanupContainers(t, docker, cluster)
	logs := &syncBuffer{}
	a := newAPI(t, func(c *controller.Config) {
		c.Cluster = cluster
		c.DeployTimeout = 30 * time.Second
		c.ResyncInterval = time.Second
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	startLayer0Hosts(t, a, docker, logs, "", "host-1", "host-2")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	st, err := store.Open(a.db, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const app = "gantry-edge"
	ensure := func(image, greeting string) *store.Deployment {
		t.Helper()
		// PORT 0: each job listens on a port of its own on the host's
		// network, however many share a host.
		ch, err := st.EnsureSystemApp(t.Context(), store.SystemApp{Name: app, Image: image,
			Config:    map[string]string{"PORT": "0", "GREETING": greeting},
			Processes: map[string]types.Process{"edge": {Command: "/app serve", System: &types.SystemProcess{PerHost: true}}},
			Counts:    map[string]int{"edge": 1}})
		if err != nil {
			t.Fatal(err)
		}
		return ch.Deployment
	}
	// upByHost returns, by host, the releases of the app's jobs up.
	upByHost := func() map[string][]int {
		out := map[string][]int{}
		for _, j := range upJobs(t, a, app) {
			out[j.Host] = append(out[j.Host], j.Release)
		}
		for _, rs := range out {
			slices.Sort(rs)
		}
		return out
	}
	onEach := func(release int) func() bool {
		return func() bool {
			return maps.EqualFunc(upByHost(), map[string][]int{"host-1": {release}, "host-2": {release}}, slices.Equal)
		}
	}

	ensure(image, "v1")
	waitFor(t, "one v1 job up on each host", onEach(1))

	// Watch that each host keeps a job up while v2 replaces v1.
	stop := make(chan struct{})
	var (
		wg   sync.WaitGroup
		gaps []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			jobs, err := a.c.ListJobs(t.Context(), app)
			if err != nil {
				continue
			}
			up := map[string]bool{}
			for _, j := range jobs {
				up[j.Host] = up[j.Host] || j.State == types.JobUp
			}
			for _, h := range []string{"host-1", "host-2"} {
				if !up[h] {
					gaps = append(gaps, fmt.Sprintf("%s has no job up: %+v", h, jobs))
				}
			}
		}
	}()
	dep := ensure(image, "v2")
	if dep == nil {
		t.Fatal("v2 made no deployment")
	}
	waitFor(t, "v2's deployment to complete", func() bool {
		status, _ := a.deployment(t, app, 2)
		return status == types.DeployComplete
	})
	waitFor(t, "one v2 job up on each host, and no v1 job", onEach(2))
	close(stop)
	wg.Wait()
	if len(gaps) > 0 {
		t.Errorf("a host had no job up during the deployment (%d times), first: %s", len(gaps), gaps[0])
	}
	// The deployer saw the type as per-host: its progress counts hosts.
	if d, err := st.GetDeployment(t.Context(), app, dep.ID); err != nil || len(d.Processes) != 1 ||
		!d.Processes[0].PerHost || d.Processes[0].Up != 2 || d.Processes[0].Want != 2 {
		t.Errorf("v2's deployment %+v, %v: want edge per-host with 2 of 2 hosts up", d.Processes, err)
	}

	// A drained host's job stops and moves nowhere; undrained, the host
	// gets one again.
	if _, err := a.c.DrainHost(t.Context(), "host-2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "v2's job on host-1 alone", func() bool {
		return maps.EqualFunc(upByHost(), map[string][]int{"host-1": {2}}, slices.Equal) && len(upJobs(t, a, app)) == 1
	})
	if _, err := a.c.UndrainHost(t.Context(), "host-2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one v2 job up on each host again", onEach(2))

	// A release that cannot run rolls back: v2 keeps a job on each host.
	ensure("gantry-test/missing:none", "v3")
	waitFor(t, "v3's deployment to roll back", func() bool {
		status, _ := a.deployment(t, app, 3)
		return status == types.DeployRolledBack
	})
	waitFor(t, "v2 alone, one job up on each host", onEach(2))
	if _, reason := a.deployment(t, app, 3); !strings.Contains(reason, "image not found") {
		t.Errorf("v3's deployment failed with %q, want the missing image", reason)
	}

	// The formation shows the process as per-host.
	f, err := a.c.GetFormation(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.PerHost, []string{"edge"}) || f.Processes["edge"] != 1 {
		t.Errorf("formation %+v, want edge per-host", f)
	}
}
