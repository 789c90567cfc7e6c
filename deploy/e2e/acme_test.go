package e2e

import (
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer1/acme/acmetest"
)

// acmePlatform runs gantryd up with ACME against a real Pebble, which
// validates HTTP-01 through the platform's router, with extraArgs added,
// and an image app web1 with one web job up. It returns the platform,
// Pebble and the router's HTTP address.
func acmePlatform(t *testing.T, extraArgs ...string) (*platform, *acmetest.Pebble, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: needs Docker, PostgreSQL, pebble and the binaries")
	}
	httpAddr := testenv.FreeAddr(t)
	_, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	httpPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	pebble := acmetest.Start(t, httpPort)
	p := newPlatform(t, append([]string{"--http-addr", httpAddr, "--acme-email", "ops@example.test",
		"--acme-directory", pebble.Directory, "--acme-ca-file", pebble.CAFile}, extraArgs...)...)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	p.ok("create", "web1")
	p.ok("release", "create", "-a", "web1", "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "web1", "web=1")
	eventually(t, 2*time.Minute, "web1 up", func() bool { return upCount(p.jobs("web1")) == 1 })
	return p, pebble, httpAddr
}

// TestACMEImageApp checks that a custom domain added to a running app
// answers over HTTPS with a Pebble-issued certificate within 30 s, and
// that `gantry route list` shows it issued.
func TestACMEImageApp(t *testing.T) {
	p, pebble, _ := acmePlatform(t)
	roots := pebble.Roots(t)
	p.ok("route", "add", "-a", "web1", "www.example.test", "--https-only")
	added := time.Now()
	eventually(t, 30*time.Second, "https://www.example.test/ with a Pebble-issued certificate", func() bool {
		return httpsOK(p.httpsAddr, "www.example.test", roots)
	})
	t.Logf("served with a Pebble certificate %s after route add", time.Since(added).Round(time.Millisecond))
	if out := p.ok("route", "list", "-a", "web1"); !strings.Contains(out, "issued, until") {
		t.Errorf("route list does not show the certificate issued:\n%s", out)
	}
}

// TestACMEDefaultDomain runs gantryd up with a real --domain: the default
// domain of a running app gets a Pebble-issued certificate by itself, and
// once `gantry https-only on` is set, plain HTTP to it is redirected to
// HTTPS with its path and query, but for the ACME challenge path.
func TestACMEDefaultDomain(t *testing.T) {
	p, pebble, httpAddr := acmePlatform(t, "--domain", "apps.example.test")
	const domain = "web1.apps.example.test"
	p.ok("https-only", "on", "-a", "web1")
	roots := pebble.Roots(t)
	eventually(t, 60*time.Second, "https://"+domain+"/ with a Pebble-issued certificate", func() bool {
		return httpsOK(p.httpsAddr, domain, roots)
	})
	if out := p.ok("route", "list", "-a", "web1"); !strings.Contains(out, domain) || !strings.Contains(out, "issued, until") {
		t.Errorf("route list does not show the default domain's certificate issued:\n%s", out)
	}
	_, httpsPort, err := net.SplitHostPort(p.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	plain := func(path string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "http://"+httpAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = domain
		client := http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	want := "https://" + domain + ":" + httpsPort + "/a?b=c"
	eventually(t, 30*time.Second, "http://"+domain+"/a?b=c redirected to "+want, func() bool {
		status, location := plain("/a?b=c")
		return status == http.StatusPermanentRedirect && location == want
	})
	if status, location := plain("/.well-known/acme-challenge/unknown"); status == http.StatusPermanentRedirect {
		t.Errorf("the challenge path was redirected to %s", location)
	}
}
