package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/gantryhq/gantry/deploy/stack"
	"github.com/gantryhq/gantry/deploy/testenv"
)

// pushTimeout bounds one git push, build and deployment included.
const pushTimeout = 10 * time.Minute

// TestGitPush deploys as a user would, with the real git and OpenSSH
// clients: gantry key add, gantry create, git push of a static site that
// the router then serves, a second push that makes v2, a push whose build
// fails, and a key that was never added.
func TestGitPush(t *testing.T) {
	// A short deploy timeout, so that the release that never binds $PORT
	// fails its deploy quickly.
	p := newPlatform(t, "--deploy-timeout", "25s")
	requireStackImages(t)
	for _, bin := range []string{"git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required: %v", bin, err)
		}
	}

	repo, keyFile := staticSiteRepo(t, p)

	// The first push builds, releases v1 with web=1 and serves it.
	out, err := p.push(repo, keyFile)
	if err != nil {
		t.Fatalf("git push: %v\n%s", err, out)
	}
	appURL := "http://site.localhost:" + port(t, p.httpURL)
	wantLines(t, out,
		"remote: -----> Compiled slug size is",
		"remote: -----> Creating release v1",
		"remote: -----> Deployed v1",
		"remote: =====> Application deployed: "+appURL)
	eventually(t, time.Minute, "the router to serve the site", func() bool {
		code, body, err := p.get("site.localhost", "/")
		return err == nil && code == 200 && strings.Contains(body, "Hello from a static site")
	})

	// A second push with a change: v2 serves the new page.
	index := filepath.Join(repo, "public", "index.html")
	page, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(index, bytes.Replace(page, []byte("Hello from a static site"), []byte("Hello again, v2"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "commit", "-q", "-am", "second")
	if out, err := p.push(repo, keyFile); err != nil || !strings.Contains(out, "remote: -----> Creating release v2") {
		t.Fatalf("second git push: %v\n%s", err, out)
	}
	eventually(t, time.Minute, "the router to serve v2", func() bool {
		code, body, err := p.get("site.localhost", "/")
		return err == nil && code == 200 && strings.Contains(body, "Hello again, v2")
	})
	var app struct {
		Release int `json:"release"`
	}
	if err := json.Unmarshal([]byte(p.ok("info", "-a", "site", "--json")), &app); err != nil || app.Release != 2 {
		t.Errorf("info after the second push: release %d, %v", app.Release, err)
	}

	// A push whose build fails is rejected; v2 keeps serving.
	if err := os.WriteFile(filepath.Join(repo, "Procfile"), []byte("this line is not a process\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "add", "Procfile")
	gitRun(t, repo, "commit", "-q", "-m", "broken")
	out, err = p.push(repo, keyFile)
	if err == nil || !strings.Contains(out, "[remote rejected] main -> main (build failed)") || !strings.Contains(out, "Procfile") {
		t.Errorf("push of a broken Procfile: %v\n%s", err, out)
	}
	if code, body, err := p.get("site.localhost", "/"); err != nil || code != 200 || !strings.Contains(body, "Hello again, v2") {
		t.Errorf("after the failed push: %d %q %v", code, body, err)
	}

	// A release whose web process never binds $PORT: the build works, the
	// deploy fails and says so, and v2 keeps serving.
	if err := os.WriteFile(filepath.Join(repo, "Procfile"), []byte("web: sleep 100000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "commit", "-q", "-am", "never binds $PORT")
	out, err = p.push(repo, keyFile)
	if err == nil || !strings.Contains(out, "[remote rejected] main -> main (deploy failed)") || !strings.Contains(out, "$PORT") {
		t.Errorf("push of a web process that never binds $PORT: %v\n%s", err, out)
	}
	if code, body, err := p.get("site.localhost", "/"); err != nil || code != 200 || !strings.Contains(body, "Hello again, v2") {
		t.Errorf("after the failed deploy: %d %q %v", code, body, err)
	}

	// Refusals, each with a clear message and a non-zero exit.
	other := filepath.Join(t.TempDir(), "other")
	sshKeygen(t, other)
	sshPort := port(t, "ssh://"+p.sshAddr)
	for _, tc := range []struct {
		name string
		key  string
		args []string
		want string
	}{
		{"unregistered key", other, []string{"push", "gantry", "main"}, "Permission denied"},
		{"unknown app", keyFile, []string{"push", "ssh://git@127.0.0.1:" + sshPort + "/nosuchapp.git", "main"}, "no such app: nosuchapp"},
		{"branch that does not deploy", keyFile, []string{"push", "gantry", "main:feature"}, "(not a deploy branch)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := p.git(repo, tc.key, tc.args...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("git %v: %v, want a refusal naming %q:\n%s", tc.args, err, tc.want, out)
			}
		})
	}
	t.Run("not a git command", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", p.sshCommand(keyFile)+" -p "+sshPort+" git@127.0.0.1 ls -la")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "only serves git") {
			t.Errorf("ssh ls -la: %v, want a refusal:\n%s", err, out)
		}
	})
}

// sshCommand is the ssh client command line that uses key and the test's
// own known_hosts.
func (p *platform) sshCommand(key string) string {
	return "ssh -i " + key + " -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=" + filepath.Join(p.home, "known_hosts")
}

// push runs `git push gantry main` in repo with the real ssh client and
// key, and returns its combined output.
func (p *platform) push(repo, key string) (string, error) {
	return p.git(repo, key, "push", "gantry", "main")
}

// git runs git with args in repo, with the real ssh client and key, and
// returns its combined output.
func (p *platform) git(repo, key string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "HOME="+p.home, "GIT_SSH_COMMAND="+p.sshCommand(key))
	out, err := cmd.CombinedOutput()
	if testing.Verbose() {
		p.t.Logf("git %v:\n%s", args, out)
	}
	return string(out), err
}

// requireStackImages fails the test when the images that builds and slug
// releases run are missing.
func requireStackImages(t *testing.T) {
	t.Helper()
	docker := testenv.Docker(t)
	for _, ref := range []string{stack.StackRef(stack.DefaultVersion), stack.BuilderRef(stack.DefaultVersion)} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := docker.ImageInspect(ctx, ref)
		cancel()
		if cerrdefs.IsNotFound(err) {
			t.Fatalf("the image %s is missing: run `bin/gantryd stack build` (or go test -short to skip)", ref)
		}
		if err != nil {
			t.Fatalf("inspect %s: %v", ref, err)
		}
	}
}

// wantLines checks that each of want is in a line of out, in order.
func wantLines(t *testing.T, out string, want ...string) {
	t.Helper()
	i := 0
	for line := range strings.SplitSeq(out, "\n") {
		if i < len(want) && strings.Contains(line, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("output lacks %q (in order after %q):\n%s", want[i], want[:i], out)
	}
}

// port returns the port of a URL.
func port(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	_, p, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// copyDir copies the regular files of src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// staticSiteRepo registers a new SSH key of the platform's user, makes a git
// repository of the static test app and creates the app site from it
// (gantry create pins the platform's host key and adds the remote). It
// returns the repository and the key's file.
func staticSiteRepo(t *testing.T, p *platform) (repo, keyFile string) {
	t.Helper()
	keyFile = filepath.Join(p.home, ".ssh", "id_ed25519")
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		t.Fatal(err)
	}
	sshKeygen(t, keyFile)
	p.ok("key", "add")
	repo = t.TempDir()
	copyDir(t, filepath.Join(repoRoot(), "slugbuilder", "testdata", "apps", "static"), repo)
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "add", ".")
	gitRun(t, repo, "commit", "-q", "-m", "first")
	if r := p.run(repo, nil, "create", "site"); r.code != 0 {
		t.Fatalf("create: %d %s %s", r.code, r.stdout, r.stderr)
	}
	return repo, keyFile
}
