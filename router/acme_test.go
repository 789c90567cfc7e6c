package router

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/router/types"
)

// TestACMEChallenge checks that every host's HTTP-01 challenge is answered
// from etcd on the HTTP listener, that the challenge path of an https_only
// route is not redirected, and that other paths still are.
func TestACMEChallenge(t *testing.T) {
	e := newEnv(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("app")) }))
	t.Cleanup(app.Close)
	e.register("secure-web", "i1", app.Listener.Addr().String())
	e.putRoute(types.Route{Domain: "secure.test", App: "secure", Service: "secure-web", HTTPSOnly: true})
	tr := e.startRouter(nil)
	client := httpClient(t)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := e.etcd.Put(ctx, e.space.ACMEChallenge("tok1"), "tok1.thumb"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "challenge served", 30*time.Second, func() bool {
		status, body, _, err := tr.get(t, client, "secure.test", acmeChallengePath+"tok1")
		return err == nil && status == http.StatusOK && body == "tok1.thumb"
	})

	tests := []struct {
		name, host, path string
		status           int
		body             string
	}{
		{"https-only route answers the challenge", "secure.test", acmeChallengePath + "tok1", http.StatusOK, "tok1.thumb"},
		{"host without route answers the challenge", "other.test", acmeChallengePath + "tok1", http.StatusOK, "tok1.thumb"},
		{"unknown token on https-only route is not redirected", "secure.test", acmeChallengePath + "nope", http.StatusOK, "app"},
		{"other paths of https-only route are redirected", "secure.test", "/x", http.StatusPermanentRedirect, ""},
		{"unknown token without route", "other.test", acmeChallengePath + "nope", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body, _, err := tr.get(t, client, tt.host, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.status || (tt.body != "" && body != tt.body) {
				t.Errorf("GET %s%s = %d %q, want %d %q", tt.host, tt.path, status, body, tt.status, tt.body)
			}
		})
	}

	// The ACME server may ask before the watch brought the answer (the
	// controller accepts the challenge as soon as it is in etcd): the
	// router then reads it from etcd. Here the router forgets what its
	// watch brought, as if the watch lagged.
	tr.challenges.Store(&map[string]string{})
	if status, body, _, err := tr.get(t, client, "secure.test", acmeChallengePath+"tok1"); err != nil || status != http.StatusOK || body != "tok1.thumb" {
		t.Errorf("a challenge the watch has not brought: GET = %d %q, %v; want 200 %q", status, body, err, "tok1.thumb")
	}
	if status, body, _, err := tr.get(t, client, "secure.test", acmeChallengePath+"no/such"); err != nil || status != http.StatusOK || body != "app" {
		t.Errorf("a token that is not base64url: GET = %d %q, %v; want the app's 200", status, body, err)
	}

	if _, err := e.etcd.Delete(context.Background(), e.space.ACMEChallenge("tok1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "challenge removed", 30*time.Second, func() bool {
		status, _, _, err := tr.get(t, client, "other.test", acmeChallengePath+"tok1")
		return err == nil && status == http.StatusNotFound
	})
}

// TestSealedRouteKey checks that a route whose key is sealed is served with
// its certificate by a router with the secrets key, and left out by a
// router without it.
func TestSealedRouteKey(t *testing.T) {
	e := newEnv(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("app")) }))
	t.Cleanup(app.Close)
	e.register("sealed-web", "i1", app.Listener.Addr().String())
	key := bytes.Repeat([]byte{7}, sealed.KeySize)
	s, err := sealed.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, _ := testCert(t, "sealed.test")
	sealedKey, err := s.Seal(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	e.putRoute(types.Route{Domain: "sealed.test", App: "sealed", Service: "sealed-web", TLSCert: certPEM, TLSKey: sealedKey})
	tests := []struct {
		name   string
		key    []byte
		served bool
	}{
		{"with the secrets key", key, true},
		{"without it", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := e.startRouter(func(c *Config) { c.SecretsKey = tt.key })
			status, _, _, err := tr.get(t, httpClient(t), "sealed.test", "/")
			if err != nil {
				t.Fatal(err)
			}
			if served := status == http.StatusOK; served != tt.served {
				t.Errorf("GET sealed.test = %d, want served %v", status, tt.served)
			}
			if tt.served {
				conn, err := tls.Dial("tcp", tr.httpsAddr, &tls.Config{ServerName: "sealed.test", InsecureSkipVerify: true})
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				if got := conn.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "sealed.test" {
					t.Errorf("served certificate for %v, want the route's", got)
				}
			}
		})
	}
}

// TestRedirectsToHTTPS holds the rules that send a plain HTTP request to
// HTTPS: the route's own https_only always, the app's only once there is a
// certificate, and never the ACME challenge path.
func TestRedirectsToHTTPS(t *testing.T) {
	tests := []struct {
		name     string
		route    types.Route
		hasCert  bool
		method   string
		uri      string
		redirect bool
	}{
		{"no https_only", types.Route{}, true, http.MethodGet, "/", false},
		{"route https_only with certificate", types.Route{HTTPSOnly: true}, true, http.MethodGet, "/", true},
		{"route https_only without certificate", types.Route{HTTPSOnly: true}, false, http.MethodGet, "/", true},
		{"app https_only with certificate", types.Route{AppHTTPSOnly: true}, true, http.MethodGet, "/a?b=c", true},
		{"app https_only with certificate, POST", types.Route{AppHTTPSOnly: true}, true, http.MethodPost, "/form", true},
		{"app https_only before the certificate", types.Route{AppHTTPSOnly: true}, false, http.MethodGet, "/", false},
		{"both, without certificate", types.Route{HTTPSOnly: true, AppHTTPSOnly: true}, false, http.MethodGet, "/", true},
		{"challenge path, app https_only", types.Route{AppHTTPSOnly: true}, true, http.MethodGet, acmeChallengePath + "tok", false},
		{"challenge path, route https_only", types.Route{HTTPSOnly: true}, true, http.MethodGet, acmeChallengePath + "tok", false},
		{"challenge prefix only", types.Route{AppHTTPSOnly: true}, true, http.MethodGet, acmeChallengePath, false},
		{"lookalike of the challenge path", types.Route{AppHTTPSOnly: true}, true, http.MethodGet, "/.well-known/acme-challenge", true},
		{"other well-known path", types.Route{AppHTTPSOnly: true}, true, http.MethodGet, "/.well-known/security.txt", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.uri, nil)
			if got := redirectsToHTTPS(&tt.route, tt.hasCert, req); got != tt.redirect {
				t.Errorf("redirectsToHTTPS = %v, want %v", got, tt.redirect)
			}
		})
	}
}

// TestAppHTTPSOnly checks the app-wide redirect through a router: a domain
// with a certificate (its own or a wildcard route's) is redirected with
// its path and query, one without is served over HTTP, the challenge path
// is not redirected, and HTTPS is served.
func TestAppHTTPSOnly(t *testing.T) {
	e := newEnv(t)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("app")) }))
	t.Cleanup(app.Close)
	e.register("shop-web", "i1", app.Listener.Addr().String())
	certPEM, keyPEM, _ := testCert(t, "tls.test")
	wildPEM, wildKey, _ := testCert(t, "*.wild.test")
	for _, rt := range []types.Route{
		{Domain: "tls.test", TLSCert: certPEM, TLSKey: keyPEM, AppHTTPSOnly: true},
		{Domain: "plain.test", AppHTTPSOnly: true},
		{Domain: "*.wild.test", TLSCert: wildPEM, TLSKey: wildKey},
		{Domain: "a.wild.test", AppHTTPSOnly: true},
	} {
		rt.App, rt.Service = "shop", "shop-web"
		e.putRoute(rt)
	}
	tr := e.startRouter(nil)
	_, httpsPort, err := net.SplitHostPort(tr.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	client := httpClient(t)
	waitFor(t, "routes served", 30*time.Second, func() bool {
		status, _, _, err := tr.get(t, client, "a.wild.test", "/")
		return err == nil && status == http.StatusPermanentRedirect
	})

	tests := []struct {
		name, method, host, uri string
		status                  int
		location                string
	}{
		{"certificate: redirected with path and query", http.MethodGet, "tls.test", "/a/b?c=d&e", http.StatusPermanentRedirect, "https://tls.test:" + httpsPort + "/a/b?c=d&e"},
		{"certificate: POST keeps its method (308)", http.MethodPost, "tls.test", "/form", http.StatusPermanentRedirect, "https://tls.test:" + httpsPort + "/form"},
		{"wildcard route's certificate", http.MethodGet, "a.wild.test", "/", http.StatusPermanentRedirect, "https://a.wild.test:" + httpsPort + "/"},
		{"no certificate yet: served over HTTP", http.MethodGet, "plain.test", "/", http.StatusOK, ""},
		{"challenge path not redirected", http.MethodGet, "tls.test", acmeChallengePath + "unknown", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, "http://"+tr.httpAddr+tt.uri, strings.NewReader("x=1"))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
				t.Errorf("%s %s%s = %d Location %q, want %d %q", tt.method, tt.host, tt.uri, resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
			}
		})
	}

	t.Run("HTTPS is served", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: "tls.test", InsecureSkipVerify: true},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, tr.httpsAddr)
			},
		}}
		resp, err := c.Get("https://tls.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET https://tls.test/ = %d, want 200", resp.StatusCode)
		}
	})
}
