package stack

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

func TestPlatformRef(t *testing.T) {
	digest := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name, version, want string
	}{
		{"release", "v0.3.0", "gantry/platform:v0.3.0-abababababab"},
		{"git describe", "v0.3.0-4-g1a2b3c4-dirty", "gantry/platform:v0.3.0-4-g1a2b3c4-dirty-abababababab"},
		{"unsafe characters", "feature/x+y", "gantry/platform:feature-x-y-abababababab"},
		{"leading dot", ".1", "gantry/platform:v.1-abababababab"},
		{"too long", strings.Repeat("1", 200), "gantry/platform:" + strings.Repeat("1", maxTagVersion) + "-abababababab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PlatformRef(tt.version, digest)
			if got != tt.want {
				t.Errorf("PlatformRef(%q) = %q, want %q", tt.version, got, tt.want)
			}
			if tag := got[len(PlatformImage)+1:]; !tagPattern.MatchString(tag) {
				t.Errorf("tag %q is not a valid image tag", tag)
			}
		})
	}
}

func TestPlatformConfigValidate(t *testing.T) {
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  PlatformConfig
		ok   bool
	}{
		{"complete", PlatformConfig{Version: "v1", Docker: docker}, true},
		{"all fields", PlatformConfig{Version: "v1", Binary: "/bin/true", StackVersion: "bookworm-2", Docker: docker}, true},
		{"no version", PlatformConfig{Docker: docker}, false},
		{"bad stack version", PlatformConfig{Version: "v1", StackVersion: "a/b", Docker: docker}, false},
		{"no docker", PlatformConfig{Version: "v1"}, false},
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

// testDocker returns a client of the local engine; it skips the test under
// -short.
func testDocker(t *testing.T) *client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a Docker Engine; skipped with -short")
	}
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker.Close() })
	return docker
}

// requireImages builds the images of DefaultVersion that are missing (the
// PostgreSQL image takes a minute or two; the stack images longer, as
// root).
func requireImages(t *testing.T, docker *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Minute)
	defer cancel()
	if err := Build(ctx, Config{Version: DefaultVersion, Docker: docker, Progress: t.Output(),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}); err != nil {
		t.Fatalf("build the images of %s: %v", DefaultVersion, err)
	}
}

// buildGantryd builds cmd/gantryd as it ships (static) with version into
// dir and returns its path.
func buildGantryd(t *testing.T, dir, version string) string {
	t.Helper()
	out := filepath.Join(dir, "gantryd")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -X main.version="+version, "-o", out, "../../cmd/gantryd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build gantryd: %v\n%s", err, b)
	}
	if !isStatic(out) {
		t.Fatalf("%s is not static", out)
	}
	return out
}

// TestEnsurePlatformImage builds the platform image of a gantryd, reuses it
// when nothing changed, makes a new one for a changed binary, and runs it.
func TestEnsurePlatformImage(t *testing.T) {
	docker := testDocker(t)
	requireImages(t, docker)
	version := "0.0.0-test-" + strings.ToLower(rand.Text()[:8])
	first := buildGantryd(t, t.TempDir(), version)
	// A rebuilt binary ensured under the same version string, as a "dev"
	// build is: only its digest tells the images apart.
	second := buildGantryd(t, t.TempDir(), version+"-b")

	var refs []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, ref := range refs {
			if _, err := docker.ImageRemove(ctx, ref, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				t.Errorf("remove %s: %v", ref, err)
			}
		}
	})
	ensure := func(binary string) (string, string) {
		t.Helper()
		var progress strings.Builder
		ref, err := EnsurePlatformImage(t.Context(), PlatformConfig{Version: version, Binary: binary, Docker: docker, Progress: &progress,
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))})
		if err != nil {
			t.Fatalf("EnsurePlatformImage(%s): %v\n%s", binary, err, progress.String())
		}
		refs = append(refs, ref)
		return ref, progress.String()
	}

	ref, progress := ensure(first)
	if !strings.HasPrefix(ref, PlatformImage+":"+version+"-") || !strings.Contains(progress, "Building "+ref) {
		t.Fatalf("first build: ref %q, progress:\n%s", ref, progress)
	}
	img, err := docker.ImageInspect(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	digest, err := fileDigest(first)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Config.Labels[LabelPlatformVersion]; got != version {
		t.Errorf("label %s = %q, want %q", LabelPlatformVersion, got, version)
	}
	if got := img.Config.Labels[LabelPlatformDigest]; got != digest {
		t.Errorf("label %s = %q, want %q", LabelPlatformDigest, got, digest)
	}
	if got := strings.Join(img.Config.Entrypoint, " "); got != platformBinary {
		t.Errorf("entrypoint %q, want %s", got, platformBinary)
	}
	if out := runContainer(t, docker, ref, "root", "--version"); !strings.Contains(out, "gantryd version "+version) {
		t.Errorf("gantryd --version in %s printed %q", ref, out)
	}

	again, progress := ensure(first)
	if again != ref || !strings.Contains(progress, "nothing to do") {
		t.Errorf("second ensure: ref %q (first %q), progress:\n%s", again, ref, progress)
	}
	if img2, err := docker.ImageInspect(t.Context(), again); err != nil || img2.ID != img.ID {
		t.Errorf("image after the second ensure: %s, %v; want unchanged %s", img2.ID, err, img.ID)
	}

	changed, progress := ensure(second)
	if changed == ref || !strings.Contains(progress, "Building "+changed) {
		t.Fatalf("a changed binary: ref %q (before %q), progress:\n%s", changed, ref, progress)
	}
	if out := runContainer(t, docker, changed, "root", "--version"); !strings.Contains(out, "gantryd version "+version+"-b") {
		t.Errorf("gantryd --version in %s printed %q", changed, out)
	}
}

// TestPostgresImage checks the PostgreSQL image of DefaultVersion, built
// when missing: Debian's PostgreSQL of the suite, the fixed postgres user,
// no cluster of the package's own and no apt sources left behind.
func TestPostgresImage(t *testing.T) {
	docker := testDocker(t)
	requireImages(t, docker)
	ref := PostgresRef(DefaultVersion)
	img, err := docker.ImageInspect(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{LabelVersion: DefaultVersion, LabelImage: "postgres", LabelPostgresMajor: PostgresMajor} {
		if got := img.Config.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if img.Config.StopSignal != "SIGINT" {
		t.Errorf("stop signal %q, want SIGINT", img.Config.StopSignal)
	}
	out := runContainer(t, docker, ref, "root", "sh", "-c",
		`postgres --version && id -u postgres && stat -c %U:%a `+PostgresDataDir+` && ls /etc/postgresql | wc -l && find /var/lib/apt/lists /tmp -mindepth 1 | wc -l`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"postgres (PostgreSQL) " + PostgresMajor + ".", "999", "postgres:700", "0", "0"}
	if len(lines) != len(want) {
		t.Fatalf("container printed %q", out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want it to start with %q (version, postgres uid, data dir, clusters, apt lists and temporary files)", i+1, lines[i], w)
		}
	}
}
