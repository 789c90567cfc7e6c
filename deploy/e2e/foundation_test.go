// Package e2e holds the end-to-end tests: they build the real gantryd and
// gantry binaries, run `gantryd up` on free ports in a temporary data dir, and
// drive it with the CLI, git and ssh as a user would.
package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFoundation drives create / apps / info / env / key / destroy through
// the gantry binary, then restarts gantryd and checks the state survived.
func TestFoundation(t *testing.T) {
	p := newPlatform(t)

	// A git work tree: `gantry create` adds the gantry remote.
	repo := t.TempDir()
	gitRun(t, repo, "init", "-q")
	r := p.run(repo, nil, "create", "demo")
	if r.code != 0 {
		t.Fatalf("create: %d %s %s", r.code, r.stdout, r.stderr)
	}
	remote := gitRun(t, repo, "remote", "get-url", "gantry")
	if !strings.HasPrefix(remote, "ssh://git@") || !strings.HasSuffix(remote, "/demo.git") {
		t.Fatalf("gantry remote = %q", remote)
	}
	// Inside the repo the app comes from the remote.
	if r := p.run(repo, nil, "info"); r.code != 0 || !strings.Contains(r.stdout, "demo") {
		t.Fatalf("info from remote: %d %s %s", r.code, r.stdout, r.stderr)
	}

	if out := p.ok("apps"); !strings.Contains(out, "demo") {
		t.Fatalf("apps: %s", out)
	}
	var apps []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(p.ok("apps", "--json")), &apps); err != nil || len(apps) != 1 || apps[0].Name != "demo" {
		t.Fatalf("apps --json: %v %+v", err, apps)
	}

	p.ok("env", "set", "-a", "demo", "A=1", "B=x=y")
	if out := p.ok("env", "-a", "demo"); !strings.Contains(out, "A=1") || !strings.Contains(out, "B=x=y") {
		t.Fatalf("env: %s", out)
	}
	if out := p.ok("env", "get", "-a", "demo", "B"); strings.TrimSpace(out) != "x=y" {
		t.Fatalf("env get B: %q", out)
	}
	p.ok("env", "unset", "-a", "demo", "B")
	if out := p.ok("env", "-a", "demo"); strings.Contains(out, "B=") {
		t.Fatalf("env after unset: %s", out)
	}

	// Bad input gets a clear error and exit 1, and changes nothing.
	bad := []struct {
		name string
		args []string
		want string
	}{
		{"invalid app name", []string{"create", "Bad_Name"}, "name"},
		{"duplicate app", []string{"create", "demo"}, "exists"},
		{"unknown app", []string{"info", "-a", "nosuchapp"}, "nosuchapp"},
		{"malformed assignment", []string{"env", "set", "-a", "demo", "NOEQUALS"}, "NOEQUALS"},
		{"destroy without confirmation", []string{"destroy", "-a", "demo", "--confirm", "wrong"}, "demo"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := p.run("", nil, tc.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1; stderr: %s", r.code, r.stderr)
			}
			if !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(tc.want)) || strings.Contains(r.stderr, "goroutine ") {
				t.Fatalf("stderr %q does not name %q", r.stderr, tc.want)
			}
		})
	}

	// SSH keys, made by the real ssh-keygen.
	keyFile := filepath.Join(p.home, ".ssh", "id_ed25519")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, keyFile)
	out := p.ok("key", "add")
	if !strings.Contains(out, "SHA256:") {
		t.Fatalf("key add: %s", out)
	}
	fp := "SHA256:" + strings.Fields(strings.SplitN(out, "SHA256:", 2)[1])[0]
	if out := p.ok("key", "list"); !strings.Contains(out, fp) {
		t.Fatalf("key list lacks %s: %s", fp, out)
	}

	// A wrong token gets a clear 401 message.
	r = p.run("", []string{"GANTRY_TOKEN=gty_wrong"}, "apps")
	if r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "token") {
		t.Fatalf("wrong token: exit %d, stderr %q", r.code, r.stderr)
	}

	// Restart: SIGTERM, then up again on the same data dir.
	p.terminate()
	assertNoPostgres(t, p.data)
	p.start()
	if out := p.ok("env", "-a", "demo"); !strings.Contains(out, "A=1") {
		t.Fatalf("env after restart: %s", out)
	}
	if out := p.ok("key", "list"); !strings.Contains(out, fp) {
		t.Fatalf("key list after restart: %s", out)
	}

	p.ok("key", "remove", fp)
	p.ok("destroy", "-a", "demo", "--confirm", "demo")
	if out := p.ok("apps"); strings.Contains(out, "demo") {
		t.Fatalf("apps after destroy: %s", out)
	}
}

// assertNoPostgres fails if a postgres process still serves dataDir.
func assertNoPostgres(t *testing.T, dataDir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dataDir, "postgres", "postmaster.pid")); err == nil {
		t.Fatal("postmaster.pid still present after gantryd stopped: PostgreSQL was not shut down")
	}
}

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func sshKeygen(t *testing.T, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e@gantry", "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
}
