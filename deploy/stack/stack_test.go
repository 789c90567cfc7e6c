package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

func TestConfigValidate(t *testing.T) {
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"complete", Config{Version: "0.1.0", Docker: docker}, true},
		{"test version", Config{Version: "0.0.0-test-1a2b", Docker: docker, Force: true, WorkDir: "/tmp"}, true},
		{"no version", Config{Docker: docker}, false},
		{"bad tag", Config{Version: "1.0/evil", Docker: docker}, false},
		{"tag starting with a dot", Config{Version: ".1", Docker: docker}, false},
		{"too long", Config{Version: strings.Repeat("1", 129), Docker: docker}, false},
		{"no docker", Config{Version: "0.1.0"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate() = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestRefs(t *testing.T) {
	if got := StackRef("0.1.0"); got != "gantry/stack:0.1.0" {
		t.Errorf("StackRef = %q", got)
	}
	if got := BuilderRef("0.1.0"); got != "gantry/builder:0.1.0" {
		t.Errorf("BuilderRef = %q", got)
	}
}

// TestBuild builds the three images for real (a few minutes with the .deb
// cache in the user cache dir warm), runs containers from them, and
// checks that a second build is a no-op.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds real images with debootstrap; skipped with -short")
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.Close() })
	suffix := make([]byte, 4)
	rand.Read(suffix)
	version := "0.0.0-test-" + hex.EncodeToString(suffix)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ref := range []string{PostgresRef(version), StackRef(version), BuilderRef(version)} {
			if _, err := docker.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("remove %s: %v", ref, err)
			}
		}
	})

	var progress bytes.Buffer
	cfg := Config{
		Version:  version,
		WorkDir:  t.TempDir(),
		Docker:   docker,
		Progress: &progress,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	ok, err := Exists(t.Context(), docker, version)
	if err != nil || ok {
		t.Fatalf("Exists before the build = %v, %v; want false", ok, err)
	}
	if err := Build(t.Context(), cfg); err != nil {
		t.Fatalf("Build: %v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("progress:\n%s", progress.String())

	ok, err = Exists(t.Context(), docker, version)
	if err != nil || !ok {
		t.Fatalf("Exists after the build = %v, %v; want true", ok, err)
	}
	entries, err := os.ReadDir(cfg.WorkDir)
	if err != nil || len(entries) != 0 {
		t.Errorf("work dir not cleaned: %v %v", entries, err)
	}

	stackImg, err := docker.ImageInspect(t.Context(), StackRef(version))
	if err != nil {
		t.Fatal(err)
	}
	if got := stackImg.Config.Labels[LabelVersion]; got != version {
		t.Errorf("stack label %s = %q, want %q", LabelVersion, got, version)
	}
	if stackImg.Config.WorkingDir != "/app" || !strings.Contains(strings.Join(stackImg.Config.Env, " "), "LANG=C.UTF-8") {
		t.Errorf("stack config: WorkingDir %q, Env %v", stackImg.Config.WorkingDir, stackImg.Config.Env)
	}

	hostBundle, err := os.ReadFile(hostCABundle)
	if err != nil {
		t.Fatalf("host CA bundle: %v", err)
	}
	bundle := runContainer(t, docker, StackRef(version), "root", "cat", hostCABundle)
	if extras := hostCAExtras(hostBundle, []byte(bundle)); len(extras) != 0 {
		t.Errorf("stack CA bundle lacks %d certificates of the host bundle", len(extras))
	}
	out := runContainer(t, docker, StackRef(version), "app",
		"sh", "-c", `cat /etc/debian_version && id -u && pwd && touch /app/x && python3 -c 'print(1)' && ls /usr/share/man | wc -l`)
	if lines := strings.Fields(out); len(lines) != 5 || !strings.HasPrefix(lines[0], "12.") ||
		lines[1] != "1000" || lines[2] != "/app" || lines[3] != "1" || lines[4] != "0" {
		t.Errorf("stack container printed %q; want a Debian 12 version, 1000, /app, 1, 0", out)
	}

	out = runContainer(t, docker, BuilderRef(version), "app", "sh", "-c",
		`gcc --version && git --version && printf 'int main(void){return 0;}' | gcc -x c -o /tmp/a - && /tmp/a && python3 -c 'import ensurepip, venv' && echo built`)
	if !strings.Contains(out, "gcc (Debian") || !strings.Contains(out, "git version") || !strings.HasSuffix(strings.TrimSpace(out), "built") {
		t.Errorf("builder container printed %q", out)
	}

	builderImg, err := docker.ImageInspect(t.Context(), BuilderRef(version))
	if err != nil {
		t.Fatal(err)
	}
	postgresImg, err := docker.ImageInspect(t.Context(), PostgresRef(version))
	if err != nil {
		t.Fatal(err)
	}
	if got := postgresImg.Config.Labels[LabelVersion]; got != version {
		t.Errorf("postgres label %s = %q, want %q", LabelVersion, got, version)
	}
	if out := runContainer(t, docker, PostgresRef(version), "postgres", "postgres", "--version"); !strings.Contains(out, "(PostgreSQL) "+PostgresMajor+".") {
		t.Errorf("postgres --version printed %q", out)
	}
	progress.Reset()
	if err := Build(t.Context(), cfg); err != nil {
		t.Fatalf("second Build: %v", err)
	}
	if !strings.Contains(progress.String(), "nothing to do") {
		t.Errorf("second Build progress = %q, want it to say there is nothing to do", progress.String())
	}
	for ref, id := range map[string]string{StackRef(version): stackImg.ID, BuilderRef(version): builderImg.ID, PostgresRef(version): postgresImg.ID} {
		img, err := docker.ImageInspect(t.Context(), ref)
		if err != nil || img.ID != id {
			t.Errorf("%s after the second build = %s, %v; want unchanged %s", ref, img.ID, err, id)
		}
	}
}

// runContainer runs cmd as user in a container of ref without network,
// removes the container and returns its output; a non-zero exit fails t.
func runContainer(t *testing.T, docker *client.Client, ref, user string, cmd ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	created, err := docker.ContainerCreate(ctx,
		&container.Config{Image: ref, User: user, Cmd: cmd, Labels: map[string]string{"gantry.test": "deploy/stack"}},
		&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
	if err != nil {
		t.Fatalf("create container of %s: %v", ref, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := docker.ContainerRemove(ctx, created.ID, container.RemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	waitC, errC := docker.ContainerWait(ctx, created.ID, container.WaitConditionNextExit)
	if err := docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container of %s: %v", ref, err)
	}
	var status int64
	select {
	case res := <-waitC:
		status = res.StatusCode
	case err := <-errC:
		t.Fatalf("wait for container of %s: %v", ref, err)
	}
	logs, err := docker.ContainerLogs(ctx, created.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatalf("logs of container of %s: %v", ref, err)
	}
	defer logs.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, logs); err != nil {
		t.Fatalf("read logs of container of %s: %v", ref, err)
	}
	if status != 0 {
		t.Fatalf("%v in %s exited %d: %s%s", cmd, ref, status, stdout.String(), stderr.String())
	}
	return stdout.String()
}
