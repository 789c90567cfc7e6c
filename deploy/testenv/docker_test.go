package testenv_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

func TestDockerHelpers(t *testing.T) {
	docker := testenv.Docker(t)

	dir := t.TempDir()
	files := map[string]string{
		"go.mod":  "module hello\n\ngo 1.22\n",
		"main.go": "package main\n\nfunc main() { println(\"hello\") }\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("GOWORK", "off")
	ref := testenv.BuildTestImage(t, docker, dir)

	ctx := t.Context()
	mine, other := "testenv-"+randomID(t), "testenv-"+randomID(t)
	testenv.CleanupContainers(t, docker, other)
	for _, cluster := range []string{mine, mine, other} {
		_, err := docker.ContainerCreate(ctx, &container.Config{
			Image:  ref,
			Labels: map[string]string{keyspace.LabelCluster: cluster},
		}, nil, nil, nil, "")
		if err != nil {
			t.Fatalf("create container: %v", err)
		}
	}

	for _, cluster := range []string{mine, other} {
		if _, err := docker.VolumeCreate(ctx, volume.CreateOptions{
			Name: "gantry_" + cluster + "_app_cache", Labels: map[string]string{keyspace.LabelCluster: cluster},
		}); err != nil {
			t.Fatalf("create volume: %v", err)
		}
	}
	volumes := func(cluster string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		list, err := docker.VolumeList(ctx, volume.ListOptions{
			Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return len(list.Volumes)
	}

	count := func(cluster string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		list, err := docker.ContainerList(ctx, container.ListOptions{
			All:     true,
			Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster)),
		})
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	if got := count(mine); got != 2 {
		t.Fatalf("containers of %s before removal = %d, want 2", mine, got)
	}
	if err := testenv.RemoveContainers(ctx, docker, mine); err != nil {
		t.Fatal(err)
	}
	if got := count(mine); got != 0 {
		t.Errorf("containers of %s after removal = %d, want 0", mine, got)
	}
	if got := count(other); got != 1 {
		t.Errorf("containers of another cluster after removal = %d, want 1 (untouched)", got)
	}
	if got, gotOther := volumes(mine), volumes(other); got != 0 || gotOther != 1 {
		t.Errorf("volumes after removal: %d of %s (want 0), %d of another cluster (want 1)", got, mine, gotOther)
	}
}

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
