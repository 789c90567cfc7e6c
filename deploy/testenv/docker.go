package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// dockerTimeout bounds each Docker call the helpers make, except image builds.
const dockerTimeout = 30 * time.Second

// Docker returns a client of the local Docker Engine (DOCKER_HOST or the
// default socket, API version negotiated), closed in t.Cleanup. Under
// `go test -short` the test is skipped; otherwise an unreachable engine
// fails it.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Docker Engine; skipped under -short")
	}
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("Docker Engine at %s is unreachable (tests need a running engine; use -short to skip): %v", cli.DaemonHost(), err)
	}
	return cli
}

// BuildTestImage compiles the Go main package in dir into a static binary
// (CGO_ENABLED=0) and builds a FROM-scratch image whose entrypoint is that
// binary, with the engine's classic builder. The image gets a unique
// reference, returned, and is removed in t.Cleanup.
func BuildTestImage(t testing.TB, docker *client.Client, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("build test image: the go command is needed: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "app")
	cmd := exec.CommandContext(t.Context(), goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test image: go build in %s: %v\n%s", dir, err, out)
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		t.Fatalf("build test image: %v", err)
	}

	ref := "gantry-test/" + imageName(filepath.Base(dir)) + ":" + randomHex(6)
	return buildImage(t, docker, ref, []contextFile{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n")},
		{"app", 0o755, binary},
	})
}

// contextFile is a file of a build context.
type contextFile struct {
	name string
	mode int64
	data []byte
}

// buildImage builds the image ref from a build context of files (a
// Dockerfile among them) with the engine's classic builder, and removes it
// in t.Cleanup.
func buildImage(t testing.TB, docker *client.Client, ref string, files []contextFile) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatalf("build test image: tar: %v", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatalf("build test image: tar: %v", err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("build test image: tar: %v", err)
	}
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
		t.Fatalf("build test image %s: %v", ref, err)
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
		t.Fatalf("build test image %s: %v", ref, buildErr)
	}
	return ref
}

// readBuildOutput drains an image build's JSON message stream and returns
// the error it reports, if any.
func readBuildOutput(r io.Reader) error {
	dec := json.NewDecoder(r)
	var log strings.Builder
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read build output: %w", err)
		}
		log.WriteString(msg.Stream)
		if msg.Error != "" {
			return fmt.Errorf("%s\n%s", msg.Error, log.String())
		}
	}
}

// CleanupContainers registers a t.Cleanup that force-removes every
// container labelled with the given cluster ID (keyspace.LabelCluster),
// running or not, with its anonymous volumes. It runs on failure too.
func CleanupContainers(t testing.TB, docker *client.Client, cluster string) {
	t.Helper()
	t.Cleanup(func() {
		if err := RemoveContainers(context.Background(), docker, cluster); err != nil {
			t.Errorf("clean up containers of cluster %s: %v", cluster, err)
		}
	})
}

// RemoveContainers force-removes every container labelled with the given
// cluster ID now, then the cluster's volumes (the apps' build caches).
func RemoveContainers(ctx context.Context, docker *client.Client, cluster string) error {
	lctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	list, err := docker.ContainerList(lctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster)),
	})
	cancel()
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	for _, c := range list {
		if err := removeContainer(ctx, docker, c.ID); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID, err))
		}
	}
	if err := removeVolumes(ctx, docker, cluster); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeVolumes removes every volume labelled with the given cluster ID.
func removeVolumes(ctx context.Context, docker *client.Client, cluster string) error {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	list, err := docker.VolumeList(ctx, volume.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", keyspace.LabelCluster+"="+cluster)),
	})
	if err != nil {
		return fmt.Errorf("list volumes: %w", err)
	}
	var errs []error
	for _, v := range list.Volumes {
		if err := docker.VolumeRemove(ctx, v.Name, true); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// removeContainer force-removes one container. A container already gone is
// fine; one whose removal is already in progress (by the code under test)
// is waited for.
func removeContainer(ctx context.Context, docker *client.Client, id string) error {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	err := docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err == nil || cerrdefs.IsNotFound(err) {
		return nil
	}
	if !cerrdefs.IsConflict(err) {
		return err
	}
	for {
		if _, ierr := docker.ContainerInspect(ctx, id); cerrdefs.IsNotFound(ierr) {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// imageName turns s into a valid image repository name component.
func imageName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" {
		return "app"
	}
	return name
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
