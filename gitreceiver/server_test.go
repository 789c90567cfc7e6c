package gitreceiver

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// The test binary doubles as the proc-receive hook.
func TestMain(m *testing.M) {
	if os.Getenv("GANTRY_TEST_RUN_HOOK") == "1" {
		os.Exit(RunHook(context.Background(), os.Stdin, os.Stdout, os.Stderr, os.Environ()))
	}
	os.Exit(m.Run())
}

// keys is a KeyChecker over a fixed set of keys.
type keys struct{ allowed []gossh.PublicKey }

func (k keys) Authorized(_ context.Context, key gossh.PublicKey) (bool, error) {
	for _, a := range k.allowed {
		if string(a.Marshal()) == string(key.Marshal()) {
			return true, nil
		}
	}
	return false, nil
}

// apps is an AppChecker over a set of apps that a test changes.
type apps struct {
	mu   sync.Mutex
	apps map[string]App
}

func newApps(names ...string) *apps {
	a := &apps{apps: map[string]App{}}
	for _, n := range names {
		a.create(n)
	}
	return a
}

func (a *apps) App(_ context.Context, name string) (App, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	app, ok := a.apps[name]
	if !ok {
		return App{}, fmt.Errorf("%w: %s", ErrNoApp, name)
	}
	return app, nil
}

// create makes an app named name, with a new ID.
func (a *apps) create(name string) App {
	a.mu.Lock()
	defer a.mu.Unlock()
	app := App{ID: newID(), CreatedAt: time.Now()}
	a.apps[name] = app
	return app
}

func (a *apps) set(name string, app App) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.apps[name] = app
}

func (a *apps) destroy(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.apps, name)
}

// recorder is a Builder that reads the source and records the build. A
// commit whose tree has a file named FAIL fails; one with BLOCK waits for
// the build to be cancelled.
type recorder struct {
	mu        sync.Mutex
	builds    []BuildRequest
	files     [][]string
	cancelled chan struct{}
	started   chan struct{}
	// hold is where a commit with a file named HOLD waits: its build
	// goes on when hold is closed.
	hold chan struct{}
}

func (r *recorder) Build(ctx context.Context, req BuildRequest, out io.Writer) error {
	fmt.Fprintf(out, "-----> Building %s (%s)\n", req.App, req.Commit[:7])
	src, err := req.Source(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	var files []string
	tr := tar.NewReader(src)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read source: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		files = append(files, h.Name)
	}
	r.mu.Lock()
	r.builds = append(r.builds, req)
	r.files = append(r.files, files)
	r.mu.Unlock()
	for _, f := range files {
		switch f {
		case "FAIL":
			fmt.Fprintln(out, "main.go:3:1: syntax error")
			return errors.New("build failed")
		case "HOLD":
			select {
			case <-r.hold:
			case <-ctx.Done():
				return ctx.Err()
			}
		case "BLOCK":
			r.started <- struct{}{}
			<-ctx.Done()
			r.cancelled <- struct{}{}
			return ctx.Err()
		}
	}
	fmt.Fprintln(out, "-----> Deployed")
	return nil
}

type env struct {
	t       *testing.T
	port    int
	key     string // private key file of a registered key
	other   string // private key file of an unregistered key
	rec     *recorder
	apps    *apps
	repoDir string
}

// newEnv starts a server on a loopback port; opts change its config.
func newEnv(t *testing.T, opts ...func(*Config)) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs git and ssh")
	}
	for _, bin := range []string{"git", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is required: %v", bin, err)
		}
	}
	dir := t.TempDir()
	e := &env{t: t, key: filepath.Join(dir, "id"), other: filepath.Join(dir, "other"), repoDir: filepath.Join(dir, "repos")}
	e.apps = newApps("demo", "other")
	e.rec = &recorder{cancelled: make(chan struct{}, 1), started: make(chan struct{}, 1), hold: make(chan struct{})}
	run(t, "", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", e.key)
	run(t, "", nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", e.other)
	pub, err := os.ReadFile(e.key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	pk, _, _, _, err := gossh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		HostKeyFile: filepath.Join(dir, "host_key"),
		RepoDir:     e.repoDir,
		Keys:        keys{allowed: []gossh.PublicKey{pk}},
		Apps:        e.apps,
		Builder:     e.rec,
		HookCommand: []string{"env", "GANTRY_TEST_RUN_HOOK=1", exe},
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.port = ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func (e *env) sshCommand(key string) string {
	return fmt.Sprintf("ssh -i %s -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes", key)
}

func (e *env) url(app string) string {
	return fmt.Sprintf("ssh://git@127.0.0.1:%d/%s.git", e.port, app)
}

// git runs git in dir with the given key and returns combined output and
// the exit code.
func (e *env) git(dir, key string, args ...string) (string, int) {
	e.t.Helper()
	return runCode(e.t, dir, []string{"GIT_SSH_COMMAND=" + e.sshCommand(key)}, "git", args...)
}

func (e *env) newRepo(files map[string]string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	run(e.t, dir, nil, "git", "init", "-q", "-b", "main")
	e.commit(dir, files)
	return dir
}

func (e *env) commit(dir string, files map[string]string) {
	e.t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	run(e.t, dir, nil, "git", "add", "-A")
	run(e.t, dir, nil, "git", "commit", "-q", "-m", "change")
}

var gitIdentity = []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test"}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, code := runCode(t, dir, env, name, args...)
	if code != 0 {
		t.Fatalf("%s %v: exit %d\n%s", name, args, code, out)
	}
	return out
}

func runCode(t *testing.T, dir string, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), gitIdentity...), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out), 0
}

func TestPushBuildsAndAccepts(t *testing.T) {
	e := newEnv(t)
	repo := e.newRepo(map[string]string{"index.html": "v1"})

	out, code := e.git(repo, e.key, "push", e.url("demo"), "main")
	if code != 0 {
		t.Fatalf("first push: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "remote: -----> Building demo") || !strings.Contains(out, "remote: -----> Deployed") {
		t.Fatalf("push output lacks the build:\n%s", out)
	}
	head := strings.TrimSpace(run(t, repo, nil, "git", "rev-parse", "HEAD"))
	if got := e.rec.builds[0]; got.Commit != head || got.Ref != "refs/heads/main" || got.App != "demo" {
		t.Fatalf("build request %+v, want commit %s", got, head)
	}
	if strings.Join(e.rec.files[0], ",") != "index.html" {
		t.Fatalf("source files %v", e.rec.files[0])
	}

	// A fast-forward push, then a force push of a rewritten history.
	e.commit(repo, map[string]string{"index.html": "v2"})
	if out, code := e.git(repo, e.key, "push", e.url("demo"), "main"); code != 0 {
		t.Fatalf("fast-forward push: %d\n%s", code, out)
	}
	run(t, repo, nil, "git", "commit", "-q", "--amend", "-m", "rewritten")
	if out, code := e.git(repo, e.key, "push", "--force", e.url("demo"), "main"); code != 0 {
		t.Fatalf("force push: %d\n%s", code, out)
	}
	// master deploys too.
	if out, code := e.git(repo, e.key, "push", e.url("other"), "main:master"); code != 0 {
		t.Fatalf("push of master: %d\n%s", code, out)
	}
	if n := len(e.rec.builds); n != 4 {
		t.Fatalf("%d builds, want 4", n)
	}

	// The app's repository can be cloned back.
	clone := filepath.Join(t.TempDir(), "clone")
	if out, code := e.git("", e.key, "clone", e.url("demo"), clone); code != 0 {
		t.Fatalf("clone: %d\n%s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(clone, "index.html")); err != nil || string(b) != "v2" {
		t.Fatalf("cloned index.html = %q, %v", b, err)
	}
}

func TestPushRefusals(t *testing.T) {
	e := newEnv(t)
	repo := e.newRepo(map[string]string{"index.html": "v1"})
	if out, code := e.git(repo, e.key, "push", e.url("demo"), "main"); code != 0 {
		t.Fatalf("push: %d\n%s", code, out)
	}
	good := strings.TrimSpace(run(t, e.repoDir+"/demo.git", nil, "git", "rev-parse", "refs/heads/main"))

	cases := []struct {
		name string
		do   func() (string, int)
		want string
	}{
		{"failed build", func() (string, int) {
			e.commit(repo, map[string]string{"FAIL": "x"})
			return e.git(repo, e.key, "push", e.url("demo"), "main")
		}, "syntax error"},
		{"failed build status", func() (string, int) {
			return e.git(repo, e.key, "push", e.url("demo"), "main")
		}, "! [remote rejected] main -> main (build failed)"},
		{"other branch", func() (string, int) {
			return e.git(repo, e.key, "push", e.url("demo"), "main:feature")
		}, "only the main and master branches deploy"},
		{"other branch status", func() (string, int) {
			return e.git(repo, e.key, "push", e.url("demo"), "main:feature")
		}, "! [remote rejected] main -> feature (not a deploy branch)"},
		{"delete the deploy branch", func() (string, int) {
			return e.git(repo, e.key, "push", e.url("demo"), ":main")
		}, "! [remote rejected] main (deleting the deploy branch is not supported)"},
		{"bad repository name", func() (string, int) {
			return e.git(repo, e.key, "push", fmt.Sprintf("ssh://git@127.0.0.1:%d/Bad_Name.git", e.port), "main")
		}, ` /Bad_Name.git is not an app repository (want /APP.git): invalid app name "Bad_Name": it must start with a lowercase letter`},
		{"unknown app", func() (string, int) {
			return e.git(repo, e.key, "push", e.url("nosuchapp"), "main")
		}, "no such app: nosuchapp"},
		{"unregistered key", func() (string, int) {
			return e.git(repo, e.other, "push", e.url("demo"), "main")
		}, "Permission denied"},
		{"not a git command", func() (string, int) {
			return runCode(t, "", nil, "sh", "-c", e.sshCommand(e.key)+fmt.Sprintf(" -p %d git@127.0.0.1 ls -la", e.port))
		}, "only serves git"},
		{"shell request", func() (string, int) {
			return runCode(t, "", nil, "sh", "-c", e.sshCommand(e.key)+fmt.Sprintf(" -T -p %d git@127.0.0.1", e.port))
		}, "only serves git"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := tc.do()
			if code == 0 {
				t.Fatalf("exit 0, want a refusal:\n%s", out)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("output lacks %q:\n%s", tc.want, out)
			}
		})
	}
	// Nothing that was refused moved the deployed branch.
	if got := strings.TrimSpace(run(t, e.repoDir+"/demo.git", nil, "git", "rev-parse", "refs/heads/main")); got != good {
		t.Fatalf("main moved to %s after refused pushes, want %s", got, good)
	}
	if _, code := runCode(t, e.repoDir+"/demo.git", nil, "git", "rev-parse", "--verify", "refs/heads/feature"); code == 0 {
		t.Fatal("the refused branch exists")
	}
}

func TestDisconnectCancelsBuild(t *testing.T) {
	e := newEnv(t)
	repo := e.newRepo(map[string]string{"BLOCK": "x"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "push", e.url("demo"), "main")
	cmd.Dir = repo
	cmd.Env = append(append(os.Environ(), gitIdentity...), "GIT_SSH_COMMAND="+e.sshCommand(e.key))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.rec.started:
	case <-time.After(time.Minute):
		t.Fatal("build did not start")
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // git and its ssh go away mid-build
	cmd.Wait()
	select {
	case <-e.rec.cancelled:
	case <-time.After(30 * time.Second):
		t.Fatal("the build was not cancelled after the client disconnected")
	}
}
