package host_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/gantryhq/gantry/layer0/host"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// testVolumes removes an app's volumes through the API: those of the app
// in the agent's cluster go, those of other apps and other clusters stay.
func testVolumes(t *testing.T, f *fixture) {
	e := f.env(t)
	e.start(e.config("h1"))
	api := e.api("h1")
	ctx := t.Context()

	create := func(cluster, app, name string) string {
		t.Helper()
		full := "gantry_" + cluster + "_" + app + "_" + name
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := f.docker.VolumeCreate(cctx, volume.CreateOptions{Name: full, Labels: map[string]string{
			keyspace.LabelCluster: cluster, keyspace.LabelApp: app, host.LabelVolume: name,
		}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = f.docker.VolumeRemove(cctx, full, true)
		})
		return full
	}
	gone := create(e.cluster, "demo", "build-cache")
	kept := []string{create(e.cluster, "other", "build-cache"), create(e.cluster+"x", "demo", "build-cache")}

	for _, tc := range []struct {
		app     string
		wantErr error
	}{
		{"demo", nil},
		{"demo", nil}, // again: nothing left to remove
		{"Bad_Name", hostclient.ErrBadRequest},
	} {
		err := api.RemoveAppVolumes(ctx, tc.app)
		if (tc.wantErr == nil) != (err == nil) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
			t.Errorf("RemoveAppVolumes(%q) = %v, want %v", tc.app, err, tc.wantErr)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := f.docker.VolumeList(lctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "gantry_"))})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, v := range list.Volumes {
		have[v.Name] = true
	}
	if have[gone] {
		t.Errorf("volume %s is still there", gone)
	}
	for _, v := range kept {
		if !have[v] {
			t.Errorf("volume %s was removed", v)
		}
	}
}
