package controller_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dockerclient "github.com/docker/docker/client"

	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/build"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// appsDir holds the slug builder's test apps.
const appsDir = "../../slugbuilder/testdata/apps"

// buildPlatform is a controller that builds, on a real scheduler, host
// agent and Docker Engine with the stack images.
type buildPlatform struct {
	*api
	docker  *dockerclient.Client
	cluster string
	// stopHost stops the agent of one host before the test ends.
	stopHost func(id string)
}

// newBuildPlatform starts the platform with one host agent per ID of
// hostIDs, or one, host-1, when there are none.
func newBuildPlatform(t *testing.T, hostIDs ...string) *buildPlatform {
	t.Helper()
	docker := testenv.Docker(t) // skips under -short
	stackImage, builderImage := stack.StackRef(stack.DefaultVersion), stack.BuilderRef(stack.DefaultVersion)
	for _, ref := range []string{stackImage, builderImage} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := docker.ImageInspect(ctx, ref)
		cancel()
		if cerrdefs.IsNotFound(err) {
			t.Fatalf("the image %s is missing: run `bin/gantryd stack build` to build it (or go test -short to skip)", ref)
		}
		if err != nil {
			t.Fatalf("inspect %s: %v", ref, err)
		}
	}
	gantryd := buildGantryd(t)
	cluster := fmt.Sprintf("cb-%d", time.Now().UnixNano()%1e9)
	testenv.CleanupContainers(t, docker, cluster)
	logs := &syncBuffer{}
	a := newAPI(t, func(c *controller.Config) {
		c.Cluster = cluster
		c.BuilderImage = builderImage
		c.StackImage = stackImage
		c.DeployTimeout = 15 * time.Second
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if len(hostIDs) == 0 {
		hostIDs = []string{"host-1"}
	}
	stopHost := startLayer0Hosts(t, a, docker, logs, gantryd, hostIDs...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	return &buildPlatform{api: a, docker: docker, cluster: cluster, stopHost: stopHost}
}

// buildGantryd builds gantryd as it ships (static) for the host agent to
// mount into build and app containers.
func buildGantryd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gantryd")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/gantryd")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/gantryd: %v\n%s", err, out)
	}
	return bin
}

// sourceTar returns a tar archive of the files of dir, as git archive
// makes it, with extra files added or replaced.
func sourceTar(t *testing.T, dir string, extra map[string][]byte) []byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range extra {
		files[name] = b
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		mode := int64(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(files[name])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildResult is the outcome of one build request.
type buildResult struct {
	lines []string
	build *types.Build
	err   error
}

func (r buildResult) output() string { return strings.Join(r.lines, "\n") }

// lines collects the output of a build as it comes.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, s)
}

func (l *lines) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.all, func(line string) bool { return strings.Contains(line, s) })
}

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.all)
}

// build sends src to be built as commit and collects the outcome.
func (p *buildPlatform) build(ctx context.Context, app, commit string, src []byte, out *lines) buildResult {
	b, err := p.c.Build(ctx, app, commit, bytes.NewReader(src), out.add)
	return buildResult{lines: out.get(), build: b, err: err}
}

// wantInOrder checks that each of want is in a line of out, in order.
func wantInOrder(t *testing.T, out []string, want ...string) {
	t.Helper()
	i := 0
	for _, line := range out {
		if i < len(want) && strings.Contains(line, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("output lacks %q (in order after %q):\n%s", want[i], want[:i], strings.Join(out, "\n"))
	}
}

// blobPaths returns the paths of the blobs stored.
func (a *api) blobPaths(t *testing.T) []string {
	t.Helper()
	var paths []string
	a.queryRow(t, `SELECT COALESCE(array_agg(path ORDER BY path), '{}') FROM blobstore_blobs`, &paths)
	return paths
}

// buildContainers returns the build containers of app in the cluster.
func (p *buildPlatform) buildContainers(t *testing.T, app string, running bool) []container.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	args := filters.NewArgs(
		filters.Arg("label", keyspace.LabelCluster+"="+p.cluster),
		filters.Arg("label", keyspace.LabelApp+"="+app),
		filters.Arg("label", keyspace.LabelType+"="+build.Type),
	)
	if running {
		args.Add("status", "running")
	}
	list, err := p.docker.ContainerList(ctx, container.ListOptions{All: !running, Filters: args})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestBuild pushes source through the build endpoint on a real platform:
// a static site becomes release v1 and is served; a build that fails and a
// release whose web process never listens both leave v1 serving.
func TestBuild(t *testing.T) {
	t.Parallel()
	p := newBuildPlatform(t)
	ctx := t.Context()
	if _, err := p.c.CreateApp(ctx, "site"); err != nil {
		t.Fatal(err)
	}

	// A static site: built, released as v1 with web=1, deployed.
	res := p.build(ctx, "site", "0123456789abcdef", sourceTar(t, filepath.Join(appsDir, "static"), nil), &lines{})
	if res.err != nil {
		t.Fatalf("build: %v\n%s", res.err, res.output())
	}
	if res.build.Status != types.BuildSucceeded || res.build.Release != 1 || res.build.WebURL != "http://site.localhost:8080" ||
		res.build.Commit != "0123456789abcdef" {
		t.Errorf("build = %+v", res.build)
	}
	wantInOrder(t, res.lines,
		"-----> Compiled slug size is",
		"-----> Creating release v1",
		"-----> Deployed v1",
		"=====> Application deployed: http://site.localhost:8080")
	rel, err := p.c.GetRelease(ctx, "site", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rel.Slug, "sha256:") || rel.Image != stack.StackRef(stack.DefaultVersion) ||
		rel.Description != "push of commit 0123456" || rel.Processes["web"].Command == "" {
		t.Errorf("release v1 = %+v", rel)
	}
	up := upJobs(t, p.api, "site")
	if len(up) != 1 {
		t.Fatalf("jobs up: %+v", up)
	}
	for _, j := range up {
		if body := get(j.Addr); !strings.Contains(body, "Hello from a static site") {
			t.Errorf("web.1 answers %q", body)
		}
	}
	// The build job's formation and container are gone, and so is the
	// source; the slug stays.
	if fs := p.formations(t, "site"); len(fs) != 1 || fs["v1/web"].Count != 1 {
		t.Errorf("formations after the build: %v", counts(fs))
	}
	waitFor(t, "the build container to go", func() bool { return len(p.buildContainers(t, "site", false)) == 0 })
	for _, path := range p.blobPaths(t) {
		if strings.HasPrefix(path, "builds/") {
			t.Errorf("blob %s is left after the build", path)
		}
	}
	if !slices.ContainsFunc(p.blobPaths(t), func(s string) bool { return strings.HasPrefix(s, "slugs/site/") }) {
		t.Errorf("no slug stored: %v", p.blobPaths(t))
	}

	// An invalid Procfile fails the build: no release, v1 keeps running.
	res = p.build(ctx, "site", "", sourceTar(t, filepath.Join(appsDir, "static"), map[string][]byte{
		"Procfile": []byte("this line is not a process\n"),
	}), &lines{})
	if !errors.Is(res.err, types.ErrBuildFailed) || res.build == nil || res.build.Release != 0 {
		t.Fatalf("build with a bad Procfile: %v %+v\n%s", res.err, res.build, res.output())
	}
	if !strings.Contains(res.output(), "Procfile") {
		t.Errorf("the output does not name the Procfile:\n%s", res.output())
	}
	if app, _ := p.c.GetApp(ctx, "site"); app.Release != 1 {
		t.Errorf("current release after a failed build = %d, want 1", app.Release)
	}
	if rels, _ := p.c.ListReleases(ctx, "site"); len(rels) != 1 {
		t.Errorf("releases after a failed build: %d, want 1", len(rels))
	}

	// A web process that never listens on $PORT: v2 is made, its
	// deployment fails, v1 keeps running.
	res = p.build(ctx, "site", "", sourceTar(t, filepath.Join(appsDir, "no-port"), nil), &lines{})
	if !errors.Is(res.err, types.ErrDeployFailed) || res.build == nil || res.build.Release != 2 {
		t.Fatalf("build of no-port: %v %+v\n%s", res.err, res.build, res.output())
	}
	for _, want := range []string{"nothing answered on $PORT", "v1 keeps running"} {
		if !strings.Contains(res.err.Error(), want) {
			t.Errorf("error %q lacks %q", res.err, want)
		}
	}
	wantInOrder(t, res.lines, "-----> Creating release v2", "Deploy of v2 failed", "nothing answered on $PORT")
	if app, _ := p.c.GetApp(ctx, "site"); app.Release != 1 {
		t.Errorf("current release after a failed deploy = %d, want 1", app.Release)
	}
	waitFor(t, "v1 alone to serve", func() bool {
		up := upJobs(t, p.api, "site")
		for _, j := range up {
			if j.Release != 1 || !strings.Contains(get(j.Addr), "Hello from a static site") {
				return false
			}
		}
		return len(up) == 1
	})
}

// TestBuildCancelled cancels a build while its job runs: its container is
// removed, nothing is released, and a build that waited for it runs next.
func TestBuildCancelled(t *testing.T) {
	t.Parallel()
	p := newBuildPlatform(t)
	ctx := t.Context()
	if _, err := p.c.CreateApp(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	// Incompressible content makes the slug slow to pack.
	big := make([]byte, 64<<20)
	_, _ = rand.Read(big)
	slow := sourceTar(t, filepath.Join(appsDir, "static"), map[string][]byte{"public/big.bin": big})

	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	first := make(chan buildResult, 1)
	go func() { first <- p.build(bctx, "slow", "", slow, &lines{}) }()
	waitFor(t, "the build container to run", func() bool { return len(p.buildContainers(t, "slow", true)) == 1 })

	// A second build waits for the first.
	secondOut := &lines{}
	second := make(chan buildResult, 1)
	go func() {
		second <- p.build(ctx, "slow", "", sourceTar(t, filepath.Join(appsDir, "static"), nil), secondOut)
	}()
	waitFor(t, "the second build to wait", func() bool { return secondOut.has("Waiting for another build of slow to finish") })

	cancel()
	if res := <-first; !errors.Is(res.err, context.Canceled) {
		t.Errorf("cancelled build: %v %+v", res.err, res.build)
	}
	res := <-second
	if res.err != nil || res.build.Release != 1 {
		t.Fatalf("second build: %v %+v\n%s", res.err, res.build, res.output())
	}
	// v1 is the second build's: the cancelled one released nothing.
	if rels, _ := p.c.ListReleases(ctx, "slow"); len(rels) != 1 {
		t.Errorf("releases: %d, want 1", len(rels))
	}
	waitFor(t, "the build containers to go", func() bool { return len(p.buildContainers(t, "slow", false)) == 0 })
	waitFor(t, "only v1's slug to stay", func() bool {
		var slugs []string
		for _, path := range p.blobPaths(t) {
			switch {
			case strings.HasPrefix(path, "builds/"):
				return false
			case strings.HasPrefix(path, "slugs/"):
				slugs = append(slugs, path)
			}
		}
		return len(slugs) == 1
	})
	if fs := p.formations(t, "slow"); len(fs) != 1 {
		t.Errorf("formations: %v", counts(fs))
	}
}
