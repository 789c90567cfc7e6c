package slugrunner

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment switches that turn the test binary into a runner process.
const (
	runnerEnv        = "SLUGRUNNER_TEST_RUNNER"
	runnerAppDirEnv  = "SLUGRUNNER_TEST_APP_DIR"
	runnerCommandEnv = "SLUGRUNNER_TEST_COMMAND"
	runnerStdinEnv   = "SLUGRUNNER_TEST_STDIN" // "1": pass on the runner's stdin
)

func TestMain(m *testing.M) {
	if os.Getenv(runnerEnv) == "1" {
		os.Exit(runnerMain())
	}
	os.Exit(m.Run())
}

// runnerMain runs Start the way `gantryd slugrunner start` does, for the
// tests that need signals sent to the runner's own process.
func runnerMain() int {
	cfg := Config{
		AppDir:  os.Getenv(runnerAppDirEnv),
		Command: os.Getenv(runnerCommandEnv),
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if os.Getenv(runnerStdinEnv) == "1" {
		cfg.Stdin = os.Stdin
	}
	code, err := Start(context.Background(), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 99
	}
	return code
}

// idle is shell code that waits for a signal, for at most a minute so
// that nothing outlives a crashed test.
const idle = "i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; exit 111"

// waitFor polls cond until it holds; the deadline only guards against a
// hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func fileExists(p string) func() bool {
	return func() bool { _, err := os.Stat(p); return err == nil }
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// startApp runs Start in this process with output captured.
func startApp(t *testing.T, ctx context.Context, cfg Config) (int, string, error) {
	t.Helper()
	var out bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &out
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	}
	code, err := Start(ctx, cfg)
	return code, out.String(), err
}

func TestStartEnvironmentAndProfile(t *testing.T) {
	app := t.TempDir()
	writeFiles(t, app, map[string]string{
		"Procfile":                  "web: echo \"PORT=$PORT HOME=$HOME FOO=$FOO PATH=$PATH PWD=$(pwd)\"\n",
		".profile.d/10-b.sh":        `export FOO="${FOO}b"` + "\n",
		".profile.d/00-a.sh":        "export FOO=a\n",
		".profile.d/20-skip.sh.bak": "export FOO=wrong\n",
		".profile.d/README":         "export FOO=wrong\n",
	})
	code, out, err := startApp(t, t.Context(), Config{
		AppDir: app,
		Type:   "web",
		Port:   "5000",
		Env:    []string{"PATH=/usr/bin:/bin", "HOME=/root", "PORT=1", "FOO=orig"},
	})
	if err != nil || code != 0 {
		t.Fatalf("Start = %d, %v; output %q", code, err, out)
	}
	want := fmt.Sprintf("PORT=5000 HOME=%s FOO=ab PATH=%s/bin:/usr/bin:/bin PWD=%s\n", app, app, app)
	if out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func TestStartQuoting(t *testing.T) {
	app := filepath.Join(t.TempDir(), "it's a dir")
	writeFiles(t, app, map[string]string{".profile.d/a.sh": "export GREETING='it'\\''s'\n"})
	code, out, err := startApp(t, t.Context(), Config{
		AppDir:  app,
		Command: `cd "$HOME" && printf '%s|%s\n' "$GREETING" "$(basename "$PWD")"; exit 4`,
	})
	if err != nil || code != 4 {
		t.Fatalf("Start = %d, %v; output %q", code, err, out)
	}
	if want := "it's|it's a dir\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
}

func TestStartExitCodes(t *testing.T) {
	tests := []struct {
		command string
		want    int
	}{
		{"true", 0},
		{"exit 3", 3},
		{"kill -KILL $$", 128 + int(syscall.SIGKILL)},
		{"kill -TERM $$", 128 + int(syscall.SIGTERM)},
		{"no-such-command-here", 127},
	}
	for _, tt := range tests {
		t.Run(tt.command, func(t *testing.T) {
			code, out, err := startApp(t, t.Context(), Config{AppDir: t.TempDir(), Command: tt.command})
			if err != nil || code != tt.want {
				t.Fatalf("Start = %d, %v, want %d; output %q", code, err, tt.want, out)
			}
		})
	}
}

func TestStartProcessTypes(t *testing.T) {
	tests := []struct {
		name     string
		procfile string // "" means no Procfile
		typ      string
		want     string // output, or a substring of the error
		wantErr  error
	}{
		{name: "defined type", procfile: "web: echo web\nworker: echo worker\n", typ: "worker", want: "worker\n"},
		{name: "unknown type", procfile: "worker: w\nweb: x\n", typ: "clock", want: "defines web, worker", wantErr: ErrUnknownType},
		{name: "no types", procfile: "# nothing\n", typ: "web", want: "defines none", wantErr: ErrUnknownType},
		{name: "no Procfile", typ: "web", want: "does not exist", wantErr: ErrUnknownType},
		{name: "malformed Procfile", procfile: "web: a\nweb: b\n", typ: "web", want: "line 2", wantErr: ErrProcfile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := t.TempDir()
			if tt.procfile != "" {
				writeFiles(t, app, map[string]string{"Procfile": tt.procfile})
			}
			code, out, err := startApp(t, t.Context(), Config{AppDir: app, Type: tt.typ})
			if tt.wantErr == nil {
				if err != nil || code != 0 || out != tt.want {
					t.Fatalf("Start = %d, %v, output %q; want output %q", code, err, out, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start error %v, want %v mentioning %q", err, tt.wantErr, tt.want)
			}
			if code != -1 {
				t.Errorf("exit code %d with an error, want -1", code)
			}
		})
	}
}

func testSlug(t *testing.T) []byte {
	return makeTar(t, true,
		dir("./"),
		file("./Procfile", "web: hello\n"),
		withMode(file("./bin/hello", "#!/bin/sh\necho hello from slug\n"), 0o755),
	)
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestStartSlug(t *testing.T) {
	slug := testSlug(t)
	const token = "s3cret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		w.Write(slug)
	}))
	t.Cleanup(srv.Close)
	slugFile := filepath.Join(t.TempDir(), "slug.tgz")
	if err := os.WriteFile(slugFile, slug, 0o644); err != nil {
		t.Fatal(err)
	}
	wrongDigest := "sha256:" + strings.Repeat("0", 64)

	tests := []struct {
		name    string
		slug    string
		token   string
		digest  string
		wantErr error
	}{
		{name: "file", slug: slugFile},
		{name: "file with digest", slug: slugFile, digest: digestOf(slug)},
		{name: "file with wrong digest", slug: slugFile, digest: wrongDigest, wantErr: ErrDigestMismatch},
		{name: "URL with token and digest", slug: srv.URL + "/slug.tgz", token: token, digest: digestOf(slug)},
		{name: "URL with wrong digest", slug: srv.URL + "/slug.tgz", token: token, digest: wrongDigest, wantErr: ErrDigestMismatch},
		{name: "URL with wrong token", slug: srv.URL + "/slug.tgz", token: "nope", wantErr: ErrFetch},
		{name: "missing file", slug: filepath.Join(t.TempDir(), "missing.tgz"), wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			app := filepath.Join(parent, "app")
			code, out, err := startApp(t, t.Context(), Config{
				Slug: tt.slug, Token: tt.token, Digest: tt.digest, AppDir: app, Type: "web",
			})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Start error %v, want %v", err, tt.wantErr)
				}
				if ok, _ := hasEntries(app); ok {
					t.Errorf("app directory populated after a failed install")
				}
			} else if err != nil || code != 0 || out != "hello from slug\n" {
				t.Fatalf("Start = %d, %v, output %q", code, err, out)
			}
			entries, err := os.ReadDir(parent)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != "app" {
					t.Errorf("left behind in the app's parent: %s", e.Name())
				}
			}
		})
	}
}

func TestStartSlugIntoExistingEmptyDir(t *testing.T) {
	app := t.TempDir()
	slugFile := filepath.Join(t.TempDir(), "slug.tgz")
	if err := os.WriteFile(slugFile, testSlug(t), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, err := startApp(t, t.Context(), Config{Slug: slugFile, AppDir: app, Type: "web"})
	if err != nil || code != 0 || out != "hello from slug\n" {
		t.Fatalf("Start = %d, %v, output %q", code, err, out)
	}
}

func TestStartSkipsPopulatedAppDir(t *testing.T) {
	app := t.TempDir()
	writeFiles(t, app, map[string]string{"Procfile": "web: echo cached\n"})
	// The slug does not exist: it must not even be opened.
	code, out, err := startApp(t, t.Context(), Config{Slug: filepath.Join(app, "missing.tgz"), AppDir: app, Type: "web"})
	if err != nil || code != 0 || out != "cached\n" {
		t.Fatalf("Start = %d, %v, output %q", code, err, out)
	}
}

func TestStartContextCancel(t *testing.T) {
	tests := []struct {
		name    string
		command string
		want    int
	}{
		{name: "command exits on SIGTERM", command: `trap 'exit 5' TERM; touch ready; ` + idle, want: 5},
		{name: "command ignores SIGTERM", command: `trap '' TERM; touch ready; ` + idle, want: 128 + int(syscall.SIGKILL)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := t.TempDir()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			type result struct {
				code int
				out  string
				err  error
			}
			done := make(chan result, 1)
			go func() {
				code, out, err := startApp(t, ctx, Config{AppDir: app, Command: tt.command, StopTimeout: 100 * time.Millisecond})
				done <- result{code, out, err}
			}()
			waitFor(t, "the command to start", fileExists(filepath.Join(app, "ready")))
			cancel()
			res := <-done
			if res.err != nil || res.code != tt.want {
				t.Fatalf("Start = %d, %v, want %d; output %q", res.code, res.err, tt.want, res.out)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{name: "type", cfg: Config{Type: "web"}, ok: true},
		{name: "command", cfg: Config{Command: "echo hi"}, ok: true},
		{name: "full", cfg: Config{Slug: "https://blobs/slug.tgz", Token: "t", Digest: "sha256:" + strings.Repeat("ab", 32), AppDir: "/app", Type: "web", Port: "80"}, ok: true},
		{name: "neither type nor command", cfg: Config{}},
		{name: "bad type", cfg: Config{Type: "web server"}},
		{name: "bad digest", cfg: Config{Type: "web", Digest: "md5:abc"}},
		{name: "upper-case digest", cfg: Config{Type: "web", Digest: "sha256:" + strings.Repeat("AB", 32)}},
		{name: "relative app dir", cfg: Config{Type: "web", AppDir: "app"}},
		{name: "bad port", cfg: Config{Type: "web", Port: "http"}},
		{name: "port out of range", cfg: Config{Type: "web", Port: "70000"}},
		{name: "unsupported scheme", cfg: Config{Type: "web", Slug: "ftp://host/slug.tgz"}},
		{name: "negative timeout", cfg: Config{Type: "web", StopTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
