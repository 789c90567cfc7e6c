package controller_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/layer1/acme/acmetest"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
	"github.com/gantryhq/gantry/router"
)

// acmeEnv is a router in front of an app "web" (a test server registered
// as its web service), a Pebble that validates through the router's HTTP
// listener, and a database and etcd for controllers with ACME on.
type acmeEnv struct {
	db        string
	etcd      *clientv3.Client
	space     keyspace.Space
	httpAddr  string
	httpsAddr string
	pebble    *acmetest.Pebble
	key       []byte
	// offset is added to the controllers' clock.
	offset atomic.Int64
}

func newACMEEnv(t *testing.T) *acmeEnv {
	t.Helper()
	e := &acmeEnv{db: testenv.NewDatabase(t), etcd: testenv.Etcd(t), space: keyspace.MustNew("c-test"), key: make([]byte, sealed.KeySize)}
	rand.Read(e.key)
	if err := controller.Migrate(t.Context(), e.db, nil); err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.httpAddr, e.httpsAddr = httpLn.Addr().String(), httpsLn.Addr().String()
	r, err := router.New(router.Config{Cluster: e.space.Cluster(), Etcd: e.etcd, HTTPAddr: httpLn.Addr().String(),
		HTTPSAddr: e.httpsAddr, ShutdownDelay: -1, ShutdownGrace: 5 * time.Second, SecretsKey: e.key})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, httpLn, httpsLn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("router: %v", err)
		}
	})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello from web") }))
	t.Cleanup(app.Close)
	lease, err := e.etcd.Grant(t.Context(), 600)
	if err != nil {
		t.Fatal(err)
	}
	disc := discovery.New(e.etcd, e.space, 5*time.Second, nil)
	if err := disc.Register(t.Context(), lease.ID, "web-web", discovery.Instance{ID: "i1", Addr: app.Listener.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	e.pebble = acmetest.Start(t, httpLn.Addr().(*net.TCPAddr).Port)
	return e
}

// start serves a controller with ACME on until stop is called or the test
// ends; opts change its configuration.
func (e *acmeEnv) start(t *testing.T, opts ...func(*controller.Config)) (c *client.Client, stop func()) {
	t.Helper()
	token, err := controller.CreateAdminToken(t.Context(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := testConfig(e.db, e.etcd, logs)
	cfg.InternalURL = "http://" + ln.Addr().String()
	cfg.SecretsKey = e.key
	cfg.ACME = &controller.ACMEConfig{
		Email: "ops@example.test", Directory: e.pebble.Directory, CAFile: e.pebble.CAFile,
		CheckInterval: 200 * time.Millisecond,
		Now:           func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := controller.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
			srv.Close()
			if t.Failed() {
				t.Logf("controller log:\n%s", logs.String())
			}
		})
	}
	t.Cleanup(stop)
	return client.New("http://"+ln.Addr().String(), token), stop
}

// route returns the route of domain of app.
func route(t *testing.T, c *client.Client, app, domain string) types.Route {
	t.Helper()
	routes, err := c.ListRoutes(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Domain == domain {
			return r
		}
	}
	t.Fatalf("no route %s in %+v", domain, routes)
	return types.Route{}
}

// waitState polls the route list of app until domain's certificate is in
// state.
func waitState(t *testing.T, c *client.Client, app, domain, state string) types.Route {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	for {
		r := route(t, c, app, domain)
		if r.CertState == state {
			return r
		}
		select {
		case <-ctx.Done():
			t.Fatalf("route %s: certificate %q, want %q (error %q)", domain, r.CertState, state, r.CertError)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serve fetches / of domain through the router's HTTPS listener, trusting
// roots only; it returns the body and the leaf served.
func (e *acmeEnv) serve(t *testing.T, roots *x509.CertPool, domain string) (string, *x509.Certificate, error) {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: domain},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.httpsAddr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + domain + "/")
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.TLS.PeerCertificates[0], err
}

// waitServed polls until domain answers over HTTPS with a certificate
// that Pebble issued and that ok accepts.
func (e *acmeEnv) waitServed(t *testing.T, roots *x509.CertPool, domain string, ok func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, leaf, err := e.serve(t, roots, domain)
		if err == nil && body == "hello from web" && ok(leaf) {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s over HTTPS with Pebble's certificate: %q, %v", domain, body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestACMECertificates adds custom routes to an app with ACME on against a
// real Pebble: a domain gets its certificate in the background and is
// served with it, a domain that cannot validate fails with Pebble's own
// problem and a retry time without disturbing the other, the key is sealed
// in PostgreSQL, and a certificate due for renewal (by the clock seam) is
// renewed and served without a restart.
func TestACMECertificates(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL, etcd and pebble")
	}
	e := newACMEEnv(t)
	c, _ := e.start(t)
	ctx := t.Context()
	if _, err := c.CreateApp(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	const domain, bad = "www.example.test", acmetest.UnreachablePrefix + "example.test"
	added, err := c.AddRoute(ctx, "web", types.RouteRequest{Domain: domain, HTTPSOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if added.CertState != types.CertPending {
		t.Errorf("route add answered cert_state %q, want pending", added.CertState)
	}
	if _, err := c.AddRoute(ctx, "web", types.RouteRequest{Domain: bad}); err != nil {
		t.Fatal(err)
	}
	wild, err := c.AddRoute(ctx, "web", types.RouteRequest{Domain: "*.wild.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if wild.CertState != "" {
		t.Errorf("wildcard route cert_state %q, want none (HTTP-01 cannot validate a wildcard)", wild.CertState)
	}

	issued := waitState(t, c, "web", domain, types.CertIssued)
	if !issued.TLS || time.Until(issued.CertNotAfter) < 24*time.Hour {
		t.Errorf("issued route = %+v, want TLS with a future expiry", issued)
	}
	roots := e.pebble.Roots(t)
	first := e.waitServed(t, roots, domain, func(*x509.Certificate) bool { return true })

	t.Run("failure", func(t *testing.T) {
		r := waitState(t, c, "web", bad, types.CertFailed)
		if !strings.Contains(r.CertError, "connection") || !strings.Contains(r.CertError, bad) {
			t.Errorf("cert_error = %q, want Pebble's connection problem for %s", r.CertError, bad)
		}
		if !r.CertRetryAt.After(time.Now()) {
			t.Errorf("cert_retry_at = %v, want a time to come", r.CertRetryAt)
		}
		if body, _, err := e.serve(t, roots, domain); err != nil || body != "hello from web" {
			t.Errorf("%s after the other domain failed: %q, %v", domain, body, err)
		}
	})

	t.Run("keys sealed at rest", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, e.db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var key string
		if err := conn.QueryRow(ctx, `SELECT tls_key FROM routes WHERE domain = $1`, domain).Scan(&key); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, sealed.SealedPrefix) || strings.Contains(key, "PRIVATE KEY") {
			t.Errorf("tls_key in PostgreSQL is not sealed: %.40q", key)
		}
		resp, err := e.etcd.Get(ctx, e.space.Route(domain))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("route key in etcd: %v", err)
		}
		if strings.Contains(string(resp.Kvs[0].Value), "PRIVATE KEY") || !strings.Contains(string(resp.Kvs[0].Value), sealed.SealedPrefix) {
			t.Errorf("route key in etcd holds the private key unsealed")
		}
		if err := conn.QueryRow(ctx, `SELECT key_sealed FROM acme_accounts`).Scan(&key); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, sealed.SealedPrefix) {
			t.Errorf("ACME account key in PostgreSQL is not sealed: %.40q", key)
		}
	})

	t.Run("renewal", func(t *testing.T) {
		// Move the clock to 29 days before expiry: the certificate is due.
		e.offset.Store(int64(time.Until(issued.CertNotAfter) - 29*24*time.Hour))
		renewed := e.waitServed(t, roots, domain, func(l *x509.Certificate) bool { return l.SerialNumber.Cmp(first.SerialNumber) != 0 })
		e.offset.Store(0)
		if err := renewed.VerifyHostname(domain); err != nil {
			t.Error(err)
		}
		if r := route(t, c, "web", domain); r.CertState != types.CertIssued {
			t.Errorf("after renewal cert_state = %q (%s), want issued", r.CertState, r.CertError)
		}
	})
}

// TestACMERestartMidOrder stops the controller once the challenge answer
// of an order is published, and checks that the next controller on the
// same database obtains the certificate and that no answer is left.
func TestACMERestartMidOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL, etcd and pebble")
	}
	e := newACMEEnv(t)
	c, stop := e.start(t)
	ctx := t.Context()
	if _, err := c.CreateApp(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := e.etcd.Watch(wctx, e.space.ACMEChallenges(), clientv3.WithPrefix())
	const domain = "restart.example.test"
	if _, err := c.AddRoute(ctx, "web", types.RouteRequest{Domain: domain}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watch:
	case <-time.After(60 * time.Second):
		t.Fatal("no challenge answer published within 60s")
	}
	stop()
	cancel()

	c2, _ := e.start(t)
	// The order was cut short (or, rarely, had just finished): never a
	// failure.
	r := route(t, c2, "web", domain)
	if r.CertState != types.CertPending && r.CertState != types.CertIssued {
		t.Fatalf("after the stop cert_state = %q (%s), want pending or issued", r.CertState, r.CertError)
	}
	t.Logf("after the stop cert_state = %q", r.CertState)
	waitState(t, c2, "web", domain, types.CertIssued)
	e.waitServed(t, e.pebble.Roots(t), domain, func(*x509.Certificate) bool { return true })
	resp, err := e.etcd.Get(ctx, e.space.ACMEChallenges(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d challenge answers left in etcd", resp.Count)
	}
}

// plainGet sends method for host and uri through the router's HTTP
// listener, following no redirect; it returns the status, the Location
// and the body.
func (e *acmeEnv) plainGet(t *testing.T, method, host, uri string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+e.httpAddr+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s http://%s%s: %v", method, host, uri, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// waitPlain polls plainGet until it answers status.
func (e *acmeEnv) waitPlain(t *testing.T, method, host, uri string, status int) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		got, location, body := e.plainGet(t, method, host, uri)
		if got == status {
			return location, body
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s http://%s%s = %d %q, want %d", method, host, uri, got, body, status)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestACMEDefaultDomain checks the certificate of an app's default domain
// under a real platform domain, against a real Pebble: an app created
// before ACME was on gets one once it is (and one that cannot validate
// fails with Pebble's problem), the app-wide https_only redirects plain
// HTTP only once the certificate is there and never the challenge path,
// the certificate is renewed by the clock seam, and it goes with the app.
func TestACMEDefaultDomain(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL, etcd and pebble")
	}
	e := newACMEEnv(t)
	const appDomain = "apps.example.test"
	const domain, bad = "web." + appDomain, "unreachable." + appDomain
	withDomain := func(c *controller.Config) { c.Domain = appDomain }
	ctx := t.Context()

	// ACME off: the apps are made and web turns https_only on.
	c, stop := e.start(t, withDomain, func(c *controller.Config) { c.ACME = nil })
	for _, app := range []string{"web", "unreachable"} {
		if _, err := c.CreateApp(ctx, app); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateRelease(ctx, app, webRelease(app+":v1")); err != nil {
			t.Fatal(err)
		}
	}
	on := true
	if a, err := c.UpdateApp(ctx, "web", types.UpdateAppRequest{HTTPSOnly: &on}); err != nil || !a.HTTPSOnly {
		t.Fatalf("UpdateApp = %+v, %v", a, err)
	}
	if r := route(t, c, "web", domain); r.CertState != "" || r.TLS {
		t.Errorf("default route with ACME off = %+v, want no certificate state", r)
	}
	t.Run("no redirect before the certificate", func(t *testing.T) {
		if _, body := e.waitPlain(t, http.MethodGet, domain, "/", http.StatusOK); body != "hello from web" {
			t.Errorf("http://%s/ = %q", domain, body)
		}
	})
	stop()

	// ACME on: the apps made before get their certificates.
	c, _ = e.start(t, withDomain)
	issued := waitState(t, c, "web", domain, types.CertIssued)
	if !issued.Default || !issued.TLS || time.Until(issued.CertNotAfter) < 24*time.Hour {
		t.Errorf("issued default route = %+v, want TLS with a future expiry", issued)
	}
	roots := e.pebble.Roots(t)
	first := e.waitServed(t, roots, domain, func(l *x509.Certificate) bool { return l.VerifyHostname(domain) == nil })

	t.Run("redirect once issued", func(t *testing.T) {
		_, httpsPort, err := net.SplitHostPort(e.httpsAddr)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, method, uri string
			status            int
			location          string
		}{
			{"GET keeps path and query", http.MethodGet, "/a/b?c=d", http.StatusPermanentRedirect, "https://" + domain + ":" + httpsPort + "/a/b?c=d"},
			{"POST", http.MethodPost, "/form", http.StatusPermanentRedirect, "https://" + domain + ":" + httpsPort + "/form"},
			{"challenge path is not redirected", http.MethodGet, "/.well-known/acme-challenge/unknown", http.StatusOK, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				location, _ := e.waitPlain(t, tt.method, domain, tt.uri, tt.status)
				if location != tt.location {
					t.Errorf("Location = %q, want %q", location, tt.location)
				}
			})
		}
	})

	t.Run("failure", func(t *testing.T) {
		r := waitState(t, c, "unreachable", bad, types.CertFailed)
		if !strings.Contains(r.CertError, "connection") || !strings.Contains(r.CertError, bad) || !r.CertRetryAt.After(time.Now()) {
			t.Errorf("failed default route = %+v, want Pebble's connection problem and a retry time to come", r)
		}
		// An app without https_only is not redirected.
		if status, _, _ := e.plainGet(t, http.MethodGet, bad, "/"); status == http.StatusPermanentRedirect {
			t.Errorf("http://%s/ redirected without https_only", bad)
		}
	})

	t.Run("renewal", func(t *testing.T) {
		e.offset.Store(int64(time.Until(issued.CertNotAfter) - 29*24*time.Hour))
		e.waitServed(t, roots, domain, func(l *x509.Certificate) bool { return l.SerialNumber.Cmp(first.SerialNumber) != 0 })
		e.offset.Store(0)
	})

	t.Run("goes with the app", func(t *testing.T) {
		if err := c.DeleteApp(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, e.db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM default_certs WHERE domain = $1`, domain).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d certificates of %s left in PostgreSQL", n, domain)
		}
		resp, err := e.etcd.Get(ctx, e.space.Route(domain), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 0 {
			t.Errorf("the route of %s is still in etcd", domain)
		}
	})
}
