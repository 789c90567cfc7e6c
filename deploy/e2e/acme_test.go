package e2e

import (
	"context"
	"crypto/tls"
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

// TestACMEImageApp runs gantryd up with ACME against a real Pebble, which
// validates HTTP-01 through the platform's router: a custom domain added
// to a running app answers over HTTPS with a Pebble-issued certificate
// within 30 s, and `gantry route list` shows it issued.
func TestACMEImageApp(t *testing.T) {
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
	p := newPlatform(t, "--http-addr", httpAddr, "--acme-email", "ops@example.test",
		"--acme-directory", pebble.Directory, "--acme-ca-file", pebble.CAFile)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	p.ok("create", "web1")
	p.ok("release", "create", "-a", "web1", "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "web1", "web=1")
	eventually(t, 2*time.Minute, "web1 up", func() bool { return upCount(p.jobs("web1")) == 1 })

	roots := pebble.Roots(t)
	p.ok("route", "add", "-a", "web1", "www.example.test", "--https-only")
	added := time.Now()
	eventually(t, 30*time.Second, "https://www.example.test/ with a Pebble-issued certificate", func() bool {
		var d net.Dialer
		client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, p.httpsAddr)
			},
		}}
		resp, err := client.Get("https://www.example.test/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	t.Logf("served with a Pebble certificate %s after route add", time.Since(added).Round(time.Millisecond))
	if out := p.ok("route", "list", "-a", "web1"); !strings.Contains(out, "issued, until") {
		t.Errorf("route list does not show the certificate issued:\n%s", out)
	}
}
