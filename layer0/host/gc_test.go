package host_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"

	"github.com/gantryhq/gantry/layer0/host"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// testGC checks what POST /v1/gc removes: the cluster's exited containers
// on the host (which the agent's resync also removes), the volumes of apps that no longer exist (created before the
// apps were listed), and stale tags of the named image repositories; and
// what it leaves: other clusters' resources, live apps' volumes, volumes
// newer than the list, kept and foreign images.
func testGC(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	api := e.api("h1")
	ctx := t.Context()
	dctx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 30*time.Second) }

	other := e.cluster + "x"
	exited := func(cluster string) string {
		t.Helper()
		cctx, cancel := dctx()
		defer cancel()
		resp, err := e.docker.ContainerCreate(cctx, &container.Config{Image: e.image, Labels: map[string]string{
			keyspace.LabelCluster: cluster, host.LabelHost: "h1", keyspace.LabelJob: "job-" + cluster,
			keyspace.LabelApp: "old", keyspace.LabelType: "web",
		}}, nil, nil, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = e.docker.ContainerRemove(cctx, resp.ID, container.RemoveOptions{Force: true})
		})
		return resp.ID
	}
	vol := func(cluster, app string) string {
		t.Helper()
		name := "gantry_" + cluster + "_" + app + "_data"
		cctx, cancel := dctx()
		defer cancel()
		if _, err := e.docker.VolumeCreate(cctx, volume.CreateOptions{Name: name, Labels: map[string]string{
			keyspace.LabelCluster: cluster, keyspace.LabelApp: app, host.LabelVolume: "data",
		}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = e.docker.VolumeRemove(cctx, name, true)
		})
		return name
	}
	repo := "gantry-gc-test-" + e.cluster + "/stack"
	tag := func(ref string) {
		t.Helper()
		cctx, cancel := dctx()
		defer cancel()
		if err := e.docker.ImageTag(cctx, e.image, ref); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, _ = e.docker.ImageRemove(cctx, ref, image.RemoveOptions{})
		})
	}

	ours := exited(e.cluster)
	theirs := exited(other)
	gone, live, foreign := vol(e.cluster, "gone"), vol(e.cluster, "live"), vol(other, "gone")
	tag(repo + ":v1")
	tag(repo + ":v2")

	// Listed before the volumes were created: nothing of theirs may go.
	res, err := api.GC(ctx, hostclient.GCRequest{Apps: []string{"live"}, ListedAt: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Volumes) != 0 || len(res.Images) != 0 {
		t.Errorf("GC with an old list removed %+v", res)
	}
	// The agent's own resync removes it too; whichever comes first.
	waitFor(t, "the cluster's exited container removed", func() (bool, string) {
		cctx, cancel := dctx()
		defer cancel()
		_, err := e.docker.ContainerInspect(cctx, ours)
		return cerrdefs.IsNotFound(err), fmt.Sprintf("removed by GC: %v; inspect: %v", res.Containers, err)
	})

	res, err = api.GC(ctx, hostclient.GCRequest{Apps: []string{"live"}, ListedAt: time.Now().Add(2 * time.Minute),
		ImageRepos: []string{repo}, KeepImages: []string{repo + ":v2"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Volumes, []string{gone}) || !slices.Equal(res.Images, []string{repo + ":v1"}) {
		t.Errorf("GC = %+v, want volumes [%s] and images [%s:v1]", res, gone, repo)
	}

	cctx, cancel := dctx()
	defer cancel()
	if _, err := e.docker.ContainerInspect(cctx, theirs); err != nil {
		t.Errorf("the other cluster's container: %v", err)
	}
	for _, v := range []string{live, foreign} {
		if _, err := e.docker.VolumeInspect(cctx, v); err != nil {
			t.Errorf("volume %s: %v", v, err)
		}
	}
	for _, ref := range []string{repo + ":v2", e.image} {
		if _, err := e.docker.ImageInspect(cctx, ref); err != nil {
			t.Errorf("image %s: %v", ref, err)
		}
	}
}
