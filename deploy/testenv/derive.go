package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

// DeriveTestImage builds an image FROM base, a local image (such as one of
// BuildTestImage), with one layer of its own: a file of random bytes at
// /layer. Its configuration (entrypoint, ...) is base's. The image gets a
// unique reference, returned, and is removed in t.Cleanup; removing it
// removes its own layer and leaves base alone. Nothing is pulled.
func DeriveTestImage(t testing.TB, docker *client.Client, base string) string {
	t.Helper()
	layer := make([]byte, 4<<10)
	rand.Read(layer)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"Dockerfile", []byte("FROM " + base + "\nCOPY layer /layer\n")},
		{"layer", layer},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatalf("derive test image: tar: %v", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatalf("derive test image: tar: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("derive test image: tar: %v", err)
	}

	ref := "gantry-test/derived:" + randomHex(6)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	resp, err := docker.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags:        []string{ref},
		Remove:      true,
		ForceRemove: true,
		Dockerfile:  "Dockerfile",
		Version:     build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("derive test image %s: %v", ref, err)
	}
	buildErr := readBuildOutput(resp.Body)
	resp.Body.Close()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
		defer cancel()
		if _, err := docker.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Logf("remove test image %s: %v", ref, err)
		}
	})
	if buildErr != nil {
		t.Fatalf("derive test image %s: %v", ref, buildErr)
	}
	return ref
}
