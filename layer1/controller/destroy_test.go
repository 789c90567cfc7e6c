package controller_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
	"github.com/gantryhq/gantry/layer1/logaggregator/logaggtest"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// TestDeleteAppRemovesEverything gives an app every kind of state the
// controller owns, deletes it, and lists each kind: nothing is left, and a
// new app of the same name (with a new ID) starts empty. Another app's
// state is untouched.
func TestDeleteAppRemovesEverything(t *testing.T) {
	t.Parallel()
	docker := testenv.Docker(t)
	cluster := fmt.Sprintf("cd-%d", time.Now().UnixNano()%1e9)
	testenv.CleanupContainers(t, docker, cluster)
	logURL := logaggtest.Start(t, "host-token")
	shipper, err := logclient.NewShipper(logclient.ShipperConfig{URL: logURL, Token: "host-token"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shipper.Close() })
	logs := &syncBuffer{}
	a := newAPI(t, func(c *controller.Config) {
		c.Cluster = cluster
		c.LogURL = logURL
		c.Events = shipper
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	startLayer0(t, a, docker, logs)
	ctx := t.Context()

	// Each app gets a release, a config var, a route with a certificate,
	// blobs, one-off formations, a build-cache volume and log lines.
	certPEM, keyPEM := newCert(t, []string{"www.demo.test"}, time.Now().Add(24*time.Hour))
	volumes := map[string]string{}
	for _, app := range []string{"demo", "keep"} {
		if _, err := a.c.CreateApp(ctx, app); err != nil {
			t.Fatal(err)
		}
		// A worker at 0: no job runs (the image does not exist), so no
		// deployment fails and restores the config.
		if _, err := a.c.CreateRelease(ctx, app, types.ReleaseRequest{Image: app + ":v1",
			Processes: map[string]types.Process{"worker": {Command: "/w"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.UpdateConfig(ctx, app, map[string]*string{"A": ptr("1")}); err != nil {
			t.Fatal(err)
		}
		req := types.RouteRequest{Domain: "www." + app + ".test"}
		if app == "demo" {
			req.TLSCert, req.TLSKey = certPEM, keyPEM
		}
		if _, err := a.c.AddRoute(ctx, app, req); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"slugs/" + app + "/b1.tgz", "caches/" + app + "/c.tgz", "builds/" + app + "/b2/source.tar"} {
			resp, body := a.raw(t, "PUT", "/v1/blobs/"+path, "content", "Bearer "+a.token)
			if resp.StatusCode != 201 {
				t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, body)
			}
		}
		for _, kind := range []string{"build", "run"} {
			a.put(t, a.space.Formation(app, kind+"-1", kind), keyspace.Formation{App: app, Release: kind + "-1", Type: kind, Count: 0,
				Template: keyspace.JobSpec{App: app, Release: kind + "-1", Type: kind, Image: "none", OneOff: true}})
		}
		name := "gantry_" + cluster + "_" + app + "_build-cache"
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := docker.VolumeCreate(vctx, volume.CreateOptions{Name: name, Labels: map[string]string{
			keyspace.LabelCluster: cluster, keyspace.LabelApp: app, host.LabelVolume: "build-cache"}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			vctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = docker.VolumeRemove(vctx, name, true)
		})
		volumes[app] = name
		waitFor(t, app+"'s log lines", func() bool { return len(logMsgs(t, a, app, logtypes.Query{Lines: 100})) > 0 })
	}
	waitFor(t, "the host agent to report", func() bool { return len(a.kvs(t, a.space.Hosts())) == 1 })

	before := a.kvs(t, a.space.Root())
	old, err := a.c.GetApp(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.c.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}

	// etcd: no formation (one-off ones included) and no route of demo.
	waitFor(t, "demo's etcd keys to go", func() bool {
		for k, v := range a.kvs(t, a.space.Root()) {
			if strings.HasPrefix(k, a.space.AppFormations("demo")) || strings.HasPrefix(k, a.space.Routes()) && strings.Contains(v, `"app":"demo"`) {
				return false
			}
		}
		return true
	})
	after := a.kvs(t, a.space.Root())
	for k, v := range before {
		if (strings.HasPrefix(k, a.space.AppFormations("keep")) || strings.HasPrefix(k, a.space.Routes())) &&
			strings.Contains(v, `"app":"keep"`) && after[k] != v {
			t.Errorf("keep's key %s changed", k)
		}
	}
	// PostgreSQL: no row of demo (routes, so certificates, config,
	// releases, deployments, formations are the app's rows).
	for _, table := range []string{"routes", "config_vars", "releases", "deployments", "formations"} {
		var n int
		a.queryRow(t, `SELECT count(*) FROM `+table+` WHERE app_id NOT IN (SELECT id FROM apps)`, &n)
		var keep int
		a.queryRow(t, `SELECT count(*) FROM `+table+` WHERE app_id = (SELECT id FROM apps WHERE name = 'keep')`, &keep)
		if n != 0 || keep == 0 {
			t.Errorf("%s: %d rows of no app, %d of keep", table, n, keep)
		}
	}
	// Blobs: none of demo, all of keep.
	var left []string
	for _, p := range a.blobPaths(t) {
		if strings.Contains(p, "/demo/") {
			left = append(left, p)
		}
	}
	if len(left) != 0 || len(a.blobPaths(t)) != 3 {
		t.Errorf("blobs after the delete: %v", a.blobPaths(t))
	}
	// Volumes: demo's build cache is gone, keep's stays.
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	list, err := docker.VolumeList(vctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster))})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range list.Volumes {
		names = append(names, v.Name)
	}
	if len(names) != 1 || names[0] != volumes["keep"] {
		t.Errorf("volumes after the delete: %v, want only %s", names, volumes["keep"])
	}

	// A new app of the same name is a new app: a new ID, nothing of the
	// old one's.
	again, err := a.c.CreateApp(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == "" || again.ID == old.ID || again.Release != 0 {
		t.Errorf("the new demo = %+v", again)
	}
	if cfg, err := a.c.GetConfig(ctx, "demo"); err != nil || len(cfg) != 0 {
		t.Errorf("config of the new demo = %v, %v", cfg, err)
	}
	if rels, err := a.c.ListReleases(ctx, "demo"); err != nil || len(rels) != 0 {
		t.Errorf("releases of the new demo = %v, %v", rels, err)
	}
	if routes, err := a.c.ListRoutes(ctx, "demo"); err != nil || len(routes) != 0 {
		t.Errorf("routes of the new demo = %v, %v", routes, err)
	}
	if deps, err := a.c.ListDeployments(ctx, "demo"); err != nil || len(deps) != 0 {
		t.Errorf("deployments of the new demo = %v, %v", deps, err)
	}
	if lines := logMsgs(t, a, "demo", logtypes.Query{Lines: 100}); len(lines) != 0 {
		t.Errorf("log of the new demo = %q", lines)
	}
	if lines := logMsgs(t, a, "keep", logtypes.Query{Lines: 100}); len(lines) == 0 {
		t.Errorf("keep lost its log")
	}
}
