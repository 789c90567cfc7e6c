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
}

func randomID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
