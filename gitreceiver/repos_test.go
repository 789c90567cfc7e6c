package gitreceiver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecreatedAppStartsEmpty destroys an app and creates another of the
// same name: a fetch shows none of the old app's refs, and a push deploys
// as the first one.
func TestRecreatedAppStartsEmpty(t *testing.T) {
	e := newEnv(t)
	repo := e.newRepo(map[string]string{"index.html": "old app"})
	if out, code := e.git(repo, e.key, "push", e.url("demo"), "main"); code != 0 {
		t.Fatalf("push: %d\n%s", code, out)
	}
	if out, _ := e.git(repo, e.key, "ls-remote", e.url("demo")); !strings.Contains(out, "refs/heads/main") {
		t.Fatalf("ls-remote before the destroy lacks main:\n%s", out)
	}

	e.apps.destroy("demo")
	e.apps.create("demo")

	out, code := e.git(repo, e.key, "ls-remote", e.url("demo"))
	if code != 0 || strings.Contains(out, "refs/") {
		t.Fatalf("ls-remote of the new app: exit %d, want no refs:\n%s", code, out)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	if out, code := e.git("", e.key, "clone", e.url("demo"), clone); code != 0 || !strings.Contains(out, "empty repository") {
		t.Fatalf("clone of the new app: exit %d, want an empty repository:\n%s", code, out)
	}
	// The first push to the new app creates main (its old value is zero).
	if out, code := e.git(repo, e.key, "push", e.url("demo"), "main"); code != 0 || !strings.Contains(out, "[new branch]") {
		t.Fatalf("push to the new app: exit %d, want a new branch:\n%s", code, out)
	}
}

// TestRepositoryOlderThanItsApp covers repositories that record no app:
// one older than the app is an earlier app's and is emptied, one younger
// is adopted.
func TestRepositoryOlderThanItsApp(t *testing.T) {
	e := newEnv(t)
	repo := e.newRepo(map[string]string{"index.html": "x"})
	for _, app := range []string{"demo", "other"} {
		if out, code := e.git(repo, e.key, "push", e.url(app), "main"); code != 0 {
			t.Fatalf("push to %s: %d\n%s", app, code, out)
		}
		run(t, "", nil, "git", "--git-dir", e.repoDir+"/"+app+".git", "config", "--unset", "gantry.appid")
	}
	e.apps.set("demo", App{ID: "new-demo", CreatedAt: time.Now().Add(time.Hour)})
	e.apps.set("other", App{ID: "same-other", CreatedAt: time.Now().Add(-time.Hour)})

	if out, _ := e.git(repo, e.key, "ls-remote", e.url("demo")); strings.Contains(out, "refs/") {
		t.Errorf("ls-remote of demo, whose repository is older than the app, shows refs:\n%s", out)
	}
	if out, _ := e.git(repo, e.key, "ls-remote", e.url("other")); !strings.Contains(out, "refs/heads/main") {
		t.Errorf("ls-remote of other, whose repository is younger than the app, lacks main:\n%s", out)
	}
	for app, id := range map[string]string{"demo": "new-demo", "other": "same-other"} {
		got := strings.TrimSpace(run(t, "", nil, "git", "--git-dir", e.repoDir+"/"+app+".git", "config", "gantry.appid"))
		if got != id {
			t.Errorf("%s records app %q, want %q", app, got, id)
		}
	}
}

// TestSweepRemovesRepositoriesOfGoneApps destroys one app and re-creates
// another without any git request: the receiver removes both repositories
// on its own, and keeps the one of the app that still exists.
func TestSweepRemovesRepositoriesOfGoneApps(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SweepInterval = 100 * time.Millisecond })
	e.apps.create("third")
	repo := e.newRepo(map[string]string{"index.html": "x"})
	for _, app := range []string{"demo", "other", "third"} {
		if out, code := e.git(repo, e.key, "push", e.url(app), "main"); code != 0 {
			t.Fatalf("push to %s: %d\n%s", app, code, out)
		}
	}
	leftover := filepath.Join(e.repoDir, trashPrefix+"interrupted")
	if err := os.MkdirAll(filepath.Join(leftover, "objects"), 0o700); err != nil {
		t.Fatal(err)
	}

	e.apps.destroy("demo")
	e.apps.destroy("other")
	e.apps.create("other")

	gone := func(p string) bool {
		_, err := os.Stat(p)
		return os.IsNotExist(err)
	}
	eventually(t, "the repositories of demo and the old other are removed", func() bool {
		return gone(filepath.Join(e.repoDir, "demo.git")) && gone(filepath.Join(e.repoDir, "other.git")) && gone(leftover)
	})
	if out, _ := e.git(repo, e.key, "ls-remote", e.url("third")); !strings.Contains(out, "refs/heads/main") {
		t.Errorf("the repository of third, which exists, lost main:\n%s", out)
	}
}
