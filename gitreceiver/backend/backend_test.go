package backend

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
)

func TestMain(m *testing.M) {
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
