package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/acme"
	"github.com/gantryhq/gantry/layer1/acme/acmetest"
	"github.com/gantryhq/gantry/router"
	routertypes "github.com/gantryhq/gantry/router/types"
)

// env is a router of one cluster in front of one app, and a Pebble that
// validates through the router's HTTP listener.
type env struct {
	etcd      *clientv3.Client
	space     keyspace.Space
	httpsAddr string
	pebble    *acmetest.Pebble
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs etcd and pebble")
	}
	e := &env{etcd: testenv.Etcd(t), space: keyspace.MustNew("acme")}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.httpsAddr = httpsLn.Addr().String()
	r, err := router.New(router.Config{Cluster: e.space.Cluster(), Etcd: e.etcd, HTTPAddr: httpLn.Addr().String(),
		HTTPSAddr: e.httpsAddr, ShutdownDelay: -1, ShutdownGrace: 5 * time.Second})
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

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello from app") }))
	t.Cleanup(app.Close)
	lease, err := e.etcd.Grant(t.Context(), 600)
	if err != nil {
		t.Fatal(err)
	}
	disc := discovery.New(e.etcd, e.space, 5*time.Second, nil)
	if err := disc.Register(t.Context(), lease.ID, "app-web", discovery.Instance{ID: "i1", Addr: app.Listener.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	e.pebble = acmetest.Start(t, httpLn.Addr().(*net.TCPAddr).Port)
	return e
}

func (e *env) putRoute(t *testing.T, rt routertypes.Route) {
	t.Helper()
	v, err := json.Marshal(rt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := e.etcd.Put(ctx, e.space.Route(rt.Domain), string(v)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) issuer(t *testing.T) *acme.Issuer {
	t.Helper()
	keyPEM, err := acme.NewAccountKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := acme.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := acme.HTTPClientWithCA(e.pebble.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := acme.NewIssuer(acme.Config{Directory: e.pebble.Directory, Email: "ops@example.test", AccountKey: key,
		HTTPClient: hc, Challenges: acme.EtcdChallenges{Etcd: e.etcd, Space: e.space}})
	if err != nil {
		t.Fatal(err)
	}
	return iss
}

// getHTTPS fetches / of domain through the router's HTTPS listener,
// trusting roots only, and returns the body and the leaf it was served.
func (e *env) getHTTPS(t *testing.T, roots *x509.CertPool, domain string) (string, *x509.Certificate, error) {
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

// TestIssue obtains certificates from a real Pebble that validates the
// HTTP-01 challenges through the router, serves one through the router,
// and checks that a domain that cannot validate fails with the server's
// own problem and disturbs nothing else.
func TestIssue(t *testing.T) {
	e := newEnv(t)
	iss := e.issuer(t)
	const domain = "www.example.test"
	e.putRoute(t, routertypes.Route{Domain: domain, App: "app", Service: "app-web", HTTPSOnly: true})

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cert, err := iss.Issue(ctx, domain)
	if err != nil {
		t.Fatalf("Issue: %v (%s)", err, acme.Problem(err))
	}
	if until := time.Until(cert.NotAfter); until < time.Hour {
		t.Errorf("NotAfter = %v, want a certificate valid for more than an hour", cert.NotAfter)
	}
	e.putRoute(t, routertypes.Route{Domain: domain, App: "app", Service: "app-web", HTTPSOnly: true, TLSCert: cert.CertPEM, TLSKey: cert.KeyPEM})
	roots := e.pebble.Roots(t)
	var body string
	var leaf *x509.Certificate
	deadline := time.Now().Add(30 * time.Second)
	for {
		body, leaf, err = e.getHTTPS(t, roots, domain)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HTTPS with the issued chain: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "hello from app" || leaf.VerifyHostname(domain) != nil {
		t.Errorf("served %q with a certificate for %v", body, leaf.DNSNames)
	}

	t.Run("domain that cannot validate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		_, err := iss.Issue(ctx, acmetest.UnreachablePrefix+"example.test")
		if err == nil {
			t.Fatal("Issue succeeded for a domain whose challenge cannot be reached")
		}
		p := acme.Problem(err)
		t.Logf("problem: %s", p)
		if !strings.Contains(p, "connection") {
			t.Errorf("Problem = %q, want the server's connection problem", p)
		}
		if body, _, err := e.getHTTPS(t, roots, domain); err != nil || body != "hello from app" {
			t.Errorf("the issued domain after the failure: %q, %v", body, err)
		}
		resp, err := e.etcd.Get(ctx, e.space.ACMEChallenges(), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 0 {
			t.Errorf("%d challenge answers left in etcd", resp.Count)
		}
	})
}
