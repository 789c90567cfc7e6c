package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dockerclient "github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/readiness"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// nextVersion is the version of the gantryd that TestUpgradeUnderLoad
// upgrades to.
const nextVersion = "e2e-next"

// TestUpgradeUnderLoad runs the platform as containers with one gantryd,
// an image app at web=2 under a steady load through the router (keep-alive
// and fresh connections), and runs `gantryd up` again with a gantryd of
// another version: no request fails; the agent's container runs the new
// platform image and re-attached to the host's lease; every system app
// has a new current release of it, deployed one by one (one-by-one
// strategy, each deployment after the one before), and runs one job
// again, checked on its readiness socket; the old router handed its
// listeners over; the API reports the new version; the app's containers
// are the same ones, never restarted.
func TestUpgradeUnderLoad(t *testing.T) {
	p, docker, cluster := containersPlatform(t, testenv.FreeAddr(t))
	next := buildGantrydVersion(t, nextVersion)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))

	const app = "steady"
	host := app + ".localhost"
	p.ok("create", app)
	p.ok("release", "create", "-a", app, "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", app, "web=2")
	eventually(t, 2*time.Minute, "web=2 up", func() bool { return upCount(p.jobs(app)) == 2 })
	eventually(t, time.Minute, "the app answers 200 through the router", func() bool {
		code, _, err := p.get(host, "/")
		return err == nil && code == http.StatusOK
	})
	systemApps := []string{"gantry-logaggregator", "gantry-gitreceiver", "gantry-scheduler", "gantry-controller", "gantry-router"}
	want := []string{"agent", "etcd", "gantry-controller", "gantry-gitreceiver", "gantry-logaggregator", "gantry-router", "gantry-scheduler", "postgres"}
	eventually(t, time.Minute, "one container of each platform component", func() bool {
		return slices.Equal(runningComponents(t, docker, cluster), want)
	})
	containers := p.appContainers(docker, app)
	if len(containers) != 2 {
		t.Fatalf("%d containers of %s, want 2", len(containers), app)
	}
	starts := containerStarts(t, docker, slices.Collect(maps.Keys(containers)))
	agentBefore := agentContainer(t, docker, cluster)
	leaseFile := filepath.Join(p.data, node.HostStateDir, "lease")
	leaseBefore := readID(t, leaseFile)

	l := startSteadyLoad(p.httpURL+"/", host)
	upgraded := time.Now()
	p.gantryd = next
	gantrydRun(t, p, p.args...)
	t.Logf("gantryd up with the new binary took %s", time.Since(upgraded).Round(time.Second))
	l.end(t, "the upgrade", minRequests)

	// The agent: a new container of the new image.
	agent := agentContainer(t, docker, cluster)
	if agent.ID == agentBefore.ID || !strings.HasPrefix(agent.Image, "gantry/platform:"+nextVersion+"-") {
		t.Errorf("agent container %s of %s after the upgrade; want a new one of gantry/platform:%s-* (before: %s of %s)",
			agent.ID[:12], agent.Image, nextVersion, agentBefore.ID[:12], agentBefore.Image)
	}
	// It re-attached to the lease kept in its state dir.
	if lease := readID(t, leaseFile); lease != leaseBefore {
		t.Errorf("host lease %s after the upgrade, want the one before, %s", lease, leaseBefore)
	}
	eventually(t, time.Minute, "the new agent reusing the host lease", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", "logs", agent.ID).CombinedOutput()
		return err == nil && strings.Contains(string(out), "reusing host lease")
	})
	// The system apps: each at a new current release of the new image,
	// with one job again.
	all := p.ok("apps", "--all")
	for _, a := range systemApps {
		if !regexp.MustCompile(`(?m)^` + a + ` +v2 `).MatchString(all) {
			t.Errorf("gantry apps --all does not show %s at v2:\n%s", a, all)
		}
		var rels []types.Release
		if err := json.Unmarshal([]byte(p.ok("-a", a, "releases", "--json")), &rels); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(rels, func(r types.Release) bool {
			return r.Version == 2 && strings.HasPrefix(r.Image, "gantry/platform:"+nextVersion+"-") && r.Description == "gantryd up "+nextVersion
		}) {
			t.Errorf("gantry -a %s releases: no v2 of gantry/platform:%s-*: %+v", a, nextVersion, rels)
		}
	}
	// One by one: each app's deployment started after the one before
	// it ended, and replaced the old job by a new one, one at a time.
	var prev types.Deployment
	for _, a := range systemApps {
		var deps []types.Deployment
		if err := json.Unmarshal([]byte(p.ok("-a", a, "deployments", "--json")), &deps); err != nil {
			t.Fatal(err)
		}
		if len(deps) == 0 {
			t.Errorf("gantry -a %s deployments: none", a)
			continue
		}
		d := deps[0]
		if d.OldRelease != 1 || d.NewRelease != 2 || d.Strategy != types.StrategyOneByOne || d.State != types.DeployComplete {
			t.Errorf("gantry -a %s deployments: the last is %+v; want v1 to v2, one-by-one, complete", a, d)
		}
		if !prev.FinishedAt.IsZero() && d.StartedAt.Before(prev.FinishedAt) {
			t.Errorf("%s's deployment started at %s, before %s's ended at %s", a, d.StartedAt, prev.App, prev.FinishedAt)
		}
		prev = d
	}
	// The old router handed its listeners to the new one.
	eventually(t, time.Minute, "the old router's handover in gantry -a gantry-router log", func() bool {
		res := p.run("", nil, "-a", "gantry-router", "log", "-n", "1000")
		return res.code == 0 && strings.Contains(res.stdout, "router handed its listeners over")
	})
	eventually(t, time.Minute, "one container of each platform component, all of the new image", func() bool {
		jobs := listContainers(t, docker, false, keyspace.LabelSystem, keyspace.LabelCluster+"="+cluster, keyspace.LabelRelease)
		return slices.Equal(runningComponents(t, docker, cluster), want) && len(jobs) == len(systemApps) &&
			!slices.ContainsFunc(jobs, func(c container.Summary) bool { return !strings.HasPrefix(c.Image, "gantry/platform:"+nextVersion+"-") })
	})
	// Their health checks are their own readiness sockets.
	for _, c := range listContainers(t, docker, false, keyspace.LabelSystem, keyspace.LabelCluster+"="+cluster, keyspace.LabelRelease) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		info, err := docker.ContainerInspect(ctx, c.ID)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		socket := slices.ContainsFunc(info.Config.Env, func(e string) bool { return strings.HasPrefix(e, readiness.EnvSocket+"=") })
		mounted := slices.ContainsFunc(info.Mounts, func(m container.MountPoint) bool { return m.Destination == readiness.MountDir })
		if sys := c.Labels[keyspace.LabelSystem]; (sys != "gantry-scheduler") != (socket && mounted) {
			t.Errorf("%s's job: readiness socket in its environment %v, its directory mounted %v; want both but for the scheduler", sys, socket, mounted)
		}
	}
	if out := p.ok("version"); !strings.Contains(out, "Server: "+nextVersion+" ") {
		t.Errorf("gantry version after the upgrade:\n%s", out)
	}
	// The app: the same containers, never restarted, still serving.
	if after := p.appContainers(docker, app); !maps.Equal(keySet(after), keySet(containers)) {
		t.Errorf("app containers after the upgrade: %v, want the same %v", slices.Collect(maps.Keys(after)), slices.Collect(maps.Keys(containers)))
	}
	if after := containerStarts(t, docker, slices.Collect(maps.Keys(containers))); !maps.Equal(after, starts) {
		t.Errorf("app container starts after the upgrade: %v, want the same %v", after, starts)
	}
	if n := upCount(p.jobs(app)); n != 2 {
		t.Errorf("%d jobs of %s up after the upgrade, want 2", n, app)
	}
}

// agentContainer returns the cluster's running agent container.
func agentContainer(t *testing.T, docker *dockerclient.Client, cluster string) container.Summary {
	t.Helper()
	list := listContainers(t, docker, false, keyspace.LabelCluster+"="+cluster, keyspace.LabelSystem+"=agent")
	if len(list) != 1 {
		t.Fatalf("%d running agent containers, want 1", len(list))
	}
	return list[0]
}

// buildGantrydVersion builds gantryd with version v into a temporary
// directory, as buildBinaries builds the suite's.
func buildGantrydVersion(t *testing.T, v string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "gantryd")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "-ldflags", "-X main.version="+v, "./cmd/gantryd")
	cmd.Dir = repoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build gantryd %s: %v\n%s", v, err, b)
	}
	return out
}
