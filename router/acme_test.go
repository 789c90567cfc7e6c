package router

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
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
