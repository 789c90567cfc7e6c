package backend

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
)

// The test binary doubles as the git receiver's proc-receive hook.
func TestMain(m *testing.M) {
	if os.Getenv("GANTRY_TEST_RUN_HOOK") == "1" {
		os.Exit(gitreceiver.RunHook(context.Background(), os.Stdin, os.Stdout, os.Stderr, os.Environ()))
	}
	os.Exit(testenv.RunWithPostgres(m))
}

const hostToken = "platform-token"

// serveController runs a controller that has no build images until the
// test ends, and returns its URL and admin token.
func serveController(t *testing.T) (string, string) {
	t.Helper()
	db := testenv.NewDatabase(t)
	if err := controller.Migrate(t.Context(), db, nil); err != nil {
		t.Fatal(err)
	}
	admin, err := controller.CreateAdminToken(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controller.New(controller.Config{DatabaseURL: db, Cluster: "c-backend", Etcd: testenv.Etcd(t), HostToken: hostToken})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return "http://" + ln.Addr().String(), admin
}

func newKey(t *testing.T) gossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBackend checks keys, apps and a refused build against a real
// controller, with the platform token.
func TestBackend(t *testing.T) {
	url, admin := serveController(t)
	ctx := t.Context()
	adminClient := client.New(url, admin)
	registered, other := newKey(t), newKey(t)
	if _, err := adminClient.AddKey(ctx, string(gossh.MarshalAuthorizedKey(registered))); err != nil {
		t.Fatal(err)
	}
	demo, err := adminClient.CreateApp(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	b := New(client.New(url, hostToken))

	for _, tt := range []struct {
		name string
		key  gossh.PublicKey
		want bool
	}{{"registered", registered, true}, {"other", other, false}} {
		t.Run(tt.name, func(t *testing.T) {
			if ok, err := b.Authorized(ctx, tt.key); err != nil || ok != tt.want {
				t.Errorf("Authorized = %v, %v; want %v", ok, err, tt.want)
			}
		})
	}
	if app, err := b.App(ctx, "demo"); err != nil || app.ID != demo.ID || !app.CreatedAt.Equal(demo.CreatedAt) {
		t.Errorf("App(demo) = %+v, %v; want ID %s, created %v", app, err, demo.ID, demo.CreatedAt)
	}
	if _, err := b.App(ctx, "nope"); !errors.Is(err, gitreceiver.ErrNoApp) {
		t.Errorf("App(nope) = %v, want ErrNoApp", err)
	}
	// An app destroyed and created again under its name is another app.
	if err := adminClient.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	again, err := adminClient.CreateApp(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if app, err := b.App(ctx, "demo"); err != nil || app.ID != again.ID || app.ID == demo.ID {
		t.Errorf("App(demo) after re-creating it = %+v, %v; want ID %s, not %s", app, err, again.ID, demo.ID)
	}

	// The controller runs no builds: the push is refused with its reason
	// in one line, and the source is read and closed.
	src := &source{r: strings.NewReader("a tar archive")}
	err = b.Build(ctx, gitreceiver.BuildRequest{App: "demo", Ref: "refs/heads/main", Commit: "0123456789abcdef",
		Source: func(context.Context) (io.ReadCloser, error) { return src, nil }}, io.Discard)
	if err == nil || err.Error() != "this controller runs no builds: it has no builder image, stack image or internal URL configured" {
		t.Errorf("Build = %v", err)
	}
	if !src.closed {
		t.Error("the source was not closed")
	}

	// A controller that is gone is an error, not a refusal.
	gone := New(client.New("http://"+testenv.FreeAddr(t), hostToken))
	if _, err := gone.Authorized(ctx, registered); err == nil || !strings.Contains(err.Error(), "cannot reach the controller") {
		t.Errorf("Authorized without a controller: %v", err)
	}
	if _, err := gone.App(ctx, "demo"); err == nil || errors.Is(err, gitreceiver.ErrNoApp) {
		t.Errorf("App without a controller: %v, want an error other than ErrNoApp", err)
	}
}

type source struct {
	r      io.Reader
	closed bool
}

func (s *source) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *source) Close() error               { s.closed = true; return nil }

// accept is a Builder that reads the source and accepts every push.
type accept struct{}

func (accept) Build(ctx context.Context, req gitreceiver.BuildRequest, out io.Writer) error {
	src, err := req.Source(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = io.Copy(io.Discard, src)
	return err
}

// TestRecreatedAppThroughController pushes to an app, destroys it and
// creates an app of the same name on a real controller, through real git
// and ssh: a fetch of the new app shows none of the old one's refs.
func TestRecreatedAppThroughController(t *testing.T) {
	if testing.Short() {
		t.Skip("needs git, ssh and PostgreSQL")
	}
	url, admin := serveController(t)
	ctx := t.Context()
	adminClient := client.New(url, admin)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id")
	cmd(t, "", "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", keyFile)
	pub, err := os.ReadFile(keyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminClient.AddKey(ctx, string(pub)); err != nil {
		t.Fatal(err)
	}
	if _, err := adminClient.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := New(client.New(url, hostToken))
	srv, err := gitreceiver.New(gitreceiver.Config{
		HostKeyFile: filepath.Join(dir, "host_key"),
		RepoDir:     filepath.Join(dir, "repos"),
		Keys:        b,
		Apps:        b,
		Builder:     accept{},
		HookCommand: []string{"env", "GANTRY_TEST_RUN_HOOK=1", exe},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	remote := fmt.Sprintf("ssh://git@%s/demo.git", ln.Addr())
	sshCmd := "GIT_SSH_COMMAND=ssh -i " + keyFile + " -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"

	repo := filepath.Join(dir, "work")
	cmd(t, "", "git", "init", "-q", "-b", "main", repo)
	if err := os.WriteFile(filepath.Join(repo, "index.html"), []byte("the old app's source"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd(t, repo, "git", "add", "-A")
	cmd(t, repo, "git", "commit", "-q", "-m", "old")
	cmd(t, repo, "git", "push", "-q", remote, "main", sshCmd)
	if out := cmd(t, repo, "git", "ls-remote", remote, sshCmd); !strings.Contains(out, "refs/heads/main") {
		t.Fatalf("ls-remote after the push lacks main:\n%s", out)
	}

	if err := adminClient.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := adminClient.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if out := cmd(t, repo, "git", "ls-remote", remote, sshCmd); strings.Contains(out, "refs/") {
		t.Fatalf("the new app demo serves the old app's refs:\n%s", out)
	}
}

// cmd runs name with args in dir and returns its combined output; an
// argument of the form GIT_SSH_COMMAND=... goes to the environment instead.
func cmd(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	env := append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.test", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.test")
	var argv []string
	for _, a := range args {
		if strings.HasPrefix(a, "GIT_SSH_COMMAND=") {
			env = append(env, a)
			continue
		}
		argv = append(argv, a)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, name, argv...)
	c.Dir, c.Env = dir, env
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, argv, err, out)
	}
	return string(out)
}
