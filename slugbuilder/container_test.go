package slugbuilder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	slugtypes "github.com/gantryhq/gantry/slugbuilder/types"
)

// Timeouts of the container test's Docker calls.
const (
	dockerCallTimeout = 30 * time.Second
	containerTimeout  = 15 * time.Minute
)

// builderUser is the unprivileged user of the builder image that build
// jobs run as.
const builderUser = "app"

// containerBuild is one run of `gantryd slugbuilder` in a container of the
// builder image.
type containerBuild struct {
	exit    int64
	stdout  string
	stderr  string
	outputs map[string][]byte // the files of OutDir by name; nil when it does not exist
}

// builderHarness runs build jobs the way the host agent does: the gantryd
// binary and the inputs mounted read-only, the outputs copied out of the
// stopped container.
type builderHarness struct {
	docker  *client.Client
	image   string
	gantryd string
	cluster string
	env     []string
}

func newBuilderHarness(t *testing.T) *builderHarness {
	t.Helper()
	docker := testenv.Docker(t) // skips under -short
	image := stack.BuilderRef(stack.DefaultVersion)
	ctx, cancel := context.WithTimeout(t.Context(), dockerCallTimeout)
	_, err := docker.ImageInspect(ctx, image)
	cancel()
	if cerrdefs.IsNotFound(err) {
		t.Fatalf("the builder image %s is missing: run `bin/gantryd stack build` to build it (or go test -short to skip)", image)
	}
	if err != nil {
		t.Fatalf("inspect %s: %v", image, err)
	}
	h := &builderHarness{
		docker:  docker,
		image:   image,
		gantryd: buildGantryd(t),
		cluster: "slugbuilder-test-" + rand.Text()[:10],
	}
	testenv.CleanupContainers(t, docker, h.cluster)
	// What the controller passes: the host's Go module proxy settings.
	for _, name := range []string{"GOPROXY", "GOFLAGS"} {
		ctx, cancel := context.WithTimeout(t.Context(), dockerCallTimeout)
		out, err := exec.CommandContext(ctx, "go", "env", name).Output()
		cancel()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		if v := strings.TrimSpace(string(out)); v != "" {
			h.env = append(h.env, name+"="+v)
		}
	}
	return h
}

// buildGantryd builds the gantryd binary as it is shipped (static,
// CGO_ENABLED=0) and returns its path.
func buildGantryd(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "gantryd")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/gantryd")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gantryd: %v\n%s", err, out)
	}
	return bin
}

// run runs `gantryd slugbuilder` with inputs (container path -> host file)
// and the extra environment env, and returns its exit status, output and
// output files.
func (h *builderHarness) run(t *testing.T, inputs map[string]string, env ...string) containerBuild {
	t.Helper()
	mounts := []mount.Mount{{Type: mount.TypeBind, Source: h.gantryd, Target: "/usr/local/bin/gantryd", ReadOnly: true}}
	for _, target := range slices.Sorted(maps.Keys(inputs)) {
		mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: inputs[target], Target: target, ReadOnly: true})
	}
	ctx, cancel := context.WithTimeout(t.Context(), dockerCallTimeout)
	created, err := h.docker.ContainerCreate(ctx, &container.Config{
		Image:  h.image,
		User:   builderUser,
		Cmd:    []string{"/usr/local/bin/gantryd", "slugbuilder"},
		Env:    append(slices.Clone(h.env), env...),
		Labels: map[string]string{keyspace.LabelCluster: h.cluster},
	}, &container.HostConfig{Mounts: mounts}, nil, nil, "")
	cancel()
	if err != nil {
		t.Fatalf("create the build container: %v", err)
	}
	id := created.ID

	ctx, cancel = context.WithTimeout(t.Context(), dockerCallTimeout)
	waitCh, errCh := h.docker.ContainerWait(context.WithoutCancel(t.Context()), id, container.WaitConditionNextExit)
	err = h.docker.ContainerStart(ctx, id, container.StartOptions{})
	cancel()
	if err != nil {
		t.Fatalf("start the build container: %v", err)
	}
	var b containerBuild
	select {
	case res := <-waitCh:
		b.exit = res.StatusCode
	case err := <-errCh:
		t.Fatalf("wait for the build container: %v", err)
	case <-time.After(containerTimeout):
		t.Fatalf("the build container did not finish within %s", containerTimeout)
	}

	ctx, cancel = context.WithTimeout(t.Context(), dockerCallTimeout)
	defer cancel()
	logs, err := h.docker.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("build container logs: %v", err)
	}
	var stdout, stderr bytes.Buffer
	_, err = stdcopy.StdCopy(&stdout, &stderr, logs)
	logs.Close()
	if err != nil {
		t.Fatalf("read build container logs: %v", err)
	}
	b.stdout, b.stderr = stdout.String(), stderr.String()
	if testing.Verbose() {
		t.Logf("build container exited %d; stdout:\n%s\nstderr:\n%s", b.exit, b.stdout, b.stderr)
	}
	b.outputs = h.copyOut(t, id, slugtypes.OutDir)
	return b
}

// copyOut copies the directory dir out of the stopped container id, as
// the host agent copies a job's outputs, and returns its files by name;
// nil when dir does not exist.
func (h *builderHarness) copyOut(t *testing.T, id, dir string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), dockerCallTimeout)
	defer cancel()
	rc, _, err := h.docker.CopyFromContainer(ctx, id, dir)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("copy %s out of the build container: %v", dir, err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("copy %s out of the build container: %v", dir, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[path.Base(hdr.Name)] = data
	}
}

// result checks the outputs of a successful build and returns its Result.
func (b containerBuild) result(t *testing.T) slugtypes.Result {
	t.Helper()
	if b.exit != 0 {
		t.Fatalf("the build exited with status %d\nstdout:\n%s\nstderr:\n%s", b.exit, b.stdout, b.stderr)
	}
	slug, ok := b.outputs[path.Base(slugtypes.SlugPath)]
	if !ok {
		t.Fatalf("no slug in %s: %v", slugtypes.OutDir, slices.Collect(maps.Keys(b.outputs)))
	}
	var res slugtypes.Result
	if err := json.Unmarshal(b.outputs[path.Base(slugtypes.ResultPath)], &res); err != nil {
		t.Fatalf("result: %v", err)
	}
	sum := sha256.Sum256(slug)
	if res.SlugDigest != "sha256:"+hex.EncodeToString(sum[:]) || res.SlugSize != int64(len(slug)) {
		t.Errorf("result %s %d does not describe the slug (%d bytes)", res.SlugDigest, res.SlugSize, len(slug))
	}
	if _, ok := b.outputs[path.Base(slugtypes.CacheOutPath)]; ok != res.CacheSaved {
		t.Errorf("cache file written: %v, but cache_saved is %v", ok, res.CacheSaved)
	}
	if !strings.Contains(b.stdout, "-----> Compiled slug size is "+humanSize(res.SlugSize)+"\n") {
		t.Errorf("stdout lacks the slug size:\n%s", b.stdout)
	}
	return res
}

// sourceFile writes the source archive of the app in dir to a new file.
func sourceFile(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "source.tgz")
	writeFile(t, p, tarDir(t, dir))
	return p
}

func TestBuildInContainer(t *testing.T) {
	t.Parallel()
	h := newBuilderHarness(t)

	t.Run("static", func(t *testing.T) {
		b := h.run(t, map[string]string{slugtypes.SourcePath: sourceFile(t, filepath.Join("testdata", "apps", "static"))},
			"CONFIG_VAR_GREETING=hello")
		res := b.result(t)
		if want := map[string]string{"web": staticCommand}; !maps.Equal(res.ProcessTypes, want) {
			t.Errorf("process types %v, want %v", res.ProcessTypes, want)
		}
		for _, want := range []string{"-----> No build cache yet\n", "-----> Static HTML app detected\n"} {
			if !strings.Contains(b.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, b.stdout)
			}
		}
		slug := slugEntries(t, b.outputs[path.Base(slugtypes.SlugPath)])
		if e := slug["public/index.html"]; e.typ != tar.TypeReg || !strings.Contains(e.data, "<") {
			t.Errorf("slug lacks public/index.html: %+v", e)
		}
	})

	t.Run("go", func(t *testing.T) {
		src := sourceFile(t, filepath.Join("testdata", "apps", "go-web"))
		cold := h.run(t, map[string]string{slugtypes.SourcePath: src})
		res := cold.result(t)
		if want := map[string]string{"web": "bin/goweb", "worker": "bin/worker"}; !maps.Equal(res.ProcessTypes, want) {
			t.Errorf("process types %v, want %v", res.ProcessTypes, want)
		}
		if !slices.Equal(res.Buildpacks, []string{"gantry/go"}) || !res.CacheSaved {
			t.Errorf("result %+v", res)
		}
		for _, want := range []string{"-----> Go app detected\n", "-----> Installing Go toolchain go1.26.8", "       Built bin/goweb, bin/worker\n"} {
			if !strings.Contains(cold.stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, cold.stdout)
			}
		}
		slug := slugEntries(t, cold.outputs[path.Base(slugtypes.SlugPath)])
		for _, bin := range []string{"bin/goweb", "bin/worker"} {
			if e := slug[bin]; e.typ != tar.TypeReg || e.mode&0o111 == 0 {
				t.Errorf("slug lacks the executable %s: %+v", bin, e)
			}
		}
		for name := range slug {
			if strings.HasPrefix(name, ".cache") || strings.HasPrefix(name, "go/") || strings.HasPrefix(name, ".config") {
				t.Errorf("slug holds %s, written under HOME by the build", name)
			}
		}

		// The next build restores the cache: it downloads nothing.
		cache := filepath.Join(t.TempDir(), "cache.tgz")
		writeFile(t, cache, cold.outputs[path.Base(slugtypes.CacheOutPath)])
		warm := h.run(t, map[string]string{slugtypes.SourcePath: src, slugtypes.CacheInPath: cache})
		warm.result(t)
		for _, want := range []string{"-----> Restored build cache (", "-----> Using cached Go toolchain go1.26.8\n"} {
			if !strings.Contains(warm.stdout, want) {
				t.Errorf("warm stdout lacks %q:\n%s", want, warm.stdout)
			}
		}
		if strings.Contains(warm.stdout, "Installing Go toolchain") || strings.Contains(warm.stdout, "go: downloading") {
			t.Errorf("the warm build downloaded again:\n%s", warm.stdout)
		}

		// A compile error fails the job, names the error and leaves no output.
		broken := h.run(t, map[string]string{
			slugtypes.SourcePath:  sourceFile(t, filepath.Join("testdata", "apps", "go-broken")),
			slugtypes.CacheInPath: cache,
		})
		if broken.exit == 0 {
			t.Fatalf("the broken app built:\n%s", broken.stdout)
		}
		if !strings.Contains(broken.stdout, `cannot use "three" (untyped string constant) as int value`) ||
			!strings.Contains(broken.stdout, " !     compile failed: buildpack gantry/go: go build: exit status 1") {
			t.Errorf("stdout does not name the compile error:\n%s", broken.stdout)
		}
		if len(broken.outputs) != 0 {
			t.Errorf("a failed build left outputs: %v", slices.Collect(maps.Keys(broken.outputs)))
		}
	})

	t.Run("bad config", func(t *testing.T) {
		b := h.run(t, nil, "CONFIG_VAR_../x=1")
		if b.exit == 0 || !strings.Contains(b.stdout, ` !     invalid slugbuilder config: CONFIG_VAR_../x: config var name "../x" is not valid`) {
			t.Errorf("exit %d, stdout:\n%s", b.exit, b.stdout)
		}
	})
}
