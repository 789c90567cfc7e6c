package controller_test

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestBadPathParameters sends path parameters that no object can have (a
// NUL byte, invalid UTF-8, names that are not names) to every endpoint
// that takes them: each gets the 404 of the object it names, never a 500.
func TestBadPathParameters(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	var cases []rawCase
	for _, bad := range []string{"%00", "%FF%FE", "a%00b", "%C0%80", strings.Repeat("x", 300)} {
		cases = append(cases,
			rawCase{"get app " + bad, "GET", "/v1/apps/" + bad, "", 404, "app_not_found", "no app named"},
			rawCase{"delete app " + bad, "DELETE", "/v1/apps/" + bad, "", 404, "app_not_found", "no app named"},
			rawCase{"config " + bad, "GET", "/v1/apps/" + bad + "/config", "", 404, "app_not_found", "no app named"},
			rawCase{"patch config " + bad, "PATCH", "/v1/apps/" + bad + "/config", `{"A": "1"}`, 404, "app_not_found", "no app named"},
			rawCase{"log " + bad, "GET", "/v1/apps/" + bad + "/log", "", 404, "app_not_found", "no app named"},
			rawCase{"get key " + bad, "GET", "/v1/keys/" + bad, "", 404, "key_not_found", "no SSH key"},
			rawCase{"delete key " + bad, "DELETE", "/v1/keys/" + bad, "", 404, "key_not_found", "no SSH key"},
			rawCase{"release " + bad, "GET", "/v1/apps/demo/releases/" + bad, "", 404, "release_not_found", "has no release"},
			rawCase{"deployment " + bad, "GET", "/v1/apps/demo/deployments/" + bad, "", 404, "deployment_not_found", "has no deployment"},
			rawCase{"deployment events " + bad, "GET", "/v1/apps/demo/deployments/" + bad + "/events", "", 404, "deployment_not_found", "has no deployment"},
			rawCase{"route " + bad, "DELETE", "/v1/apps/demo/routes/" + bad, "", 404, "route_not_found", "has no route"},
			rawCase{"job " + bad, "DELETE", "/v1/apps/demo/jobs/" + bad, "", 404, "job_not_found", "has no job"},
			// The app is checked first: an unknown app is unknown whatever
			// follows it.
			rawCase{"deployment of no app " + bad, "GET", "/v1/apps/nope/deployments/" + bad, "", 404, "app_not_found", `no app named "nope"`},
		)
	}
	a.runRaw(t, cases)
}

// TestRollbackVersion checks the versions a rollback may name.
func TestRollbackVersion(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if _, err := a.c.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateRelease(t.Context(), "demo", webRelease("demo:v1")); err != nil {
		t.Fatal(err)
	}
	const p = "/v1/apps/demo/rollback"
	a.runRaw(t, []rawCase{
		{"above int32", "POST", p, `{"version": 2147483648}`, 404, "release_not_found", "has no release v2147483648"},
		{"far above int32", "POST", p, `{"version": 99999999999}`, 404, "release_not_found", "has no release v99999999999"},
		{"zero", "POST", p, `{"version": 0}`, 422, "invalid", "version 0"},
		{"negative", "POST", p, `{"version": -1}`, 422, "invalid", "version -1"},
		{"fraction", "POST", p, `{"version": 1.5}`, 400, "bad_request", `field "version": got a JSON number 1.5, want an integer`},
		{"exponent", "POST", p, `{"version": 1e2}`, 400, "bad_request", `field "version": got a JSON number 100, want an integer`},
		{"too large for a number", "POST", p, `{"version": 1e400}`, 400, "bad_request", `field "version"`},
	})
	resp, body := a.raw(t, "GET", "/v1/apps/demo/releases/v99999999999", "", "Bearer "+a.token)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "release_not_found") {
		t.Errorf("GET a release above int32 = %d %s", resp.StatusCode, body)
	}
}

// TestJSONMessages checks that a body of the wrong shape gets a message
// naming the field and what it holds.
func TestJSONMessages(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if _, err := a.c.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateRelease(t.Context(), "demo", webRelease("demo:v1")); err != nil {
		t.Fatal(err)
	}
	a.runRaw(t, []rawCase{
		{"scale 1e2", "PUT", "/v1/apps/demo/formation", `{"web": 1e2}`, 400, "bad_request", `field "web": got a JSON number 100, want an integer`},
		{"config number", "PATCH", "/v1/apps/demo/config", `{"A": 1}`, 400, "bad_request", `config var "A": got a JSON number 1, want a string or null`},
		{"config object", "PATCH", "/v1/apps/demo/config", `{"OK": "x", "B": {}}`, 400, "bad_request", `config var "B": got a JSON object, want a string or null`},
		{"deploy timeout 1e1", "PATCH", "/v1/apps/demo/deploy", `{"timeout": 1e1}`, 400, "bad_request", `field "timeout": got a JSON number 10, want an integer`},
		{"truncated", "POST", "/v1/apps", `{"name": "ab`, 400, "bad_request", "malformed JSON"},
		{"scale a type with a NUL", "PUT", "/v1/apps/demo/formation", `{"we\u0000b": 1}`, 422, "invalid", `release v1 has no process type "we\x00b"`},
		{"scale a type with invalid UTF-8", "PUT", "/v1/apps/demo/formation", "{\"w\xff\": 1}", 422, "invalid", "release v1 has no process type"},
	})
	if cfg, err := a.c.GetConfig(t.Context(), "demo"); err != nil || len(cfg) != 0 {
		t.Errorf("config after refused changes = %v, %v", cfg, err)
	}
}

// rawHTTP sends req as it is on a new connection and returns the answer.
func rawHTTP(t *testing.T, base, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestTransportErrors checks the answers to requests that break HTTP
// itself: a broken chunked body is not "malformed JSON", and a token with
// bytes no token has gets a 401 that says so.
func TestTransportErrors(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	host := strings.TrimPrefix(a.url, "http://")
	resp, body := rawHTTP(t, a.url, "POST /v1/apps HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: Bearer "+a.token+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"nam\r\nzz\r\n")
	if resp.StatusCode != 400 || strings.Contains(body, "malformed JSON") || !strings.Contains(body, "could not read the request body") {
		t.Errorf("broken chunked body: %d %s", resp.StatusCode, body)
	}
	// (A control character never reaches the handler: net/http answers
	// 400 for the malformed header itself.)
	for _, token := range []string{"gty_\xff\xfe", "gty_a b", "gty_a\tb"} {
		resp, body = rawHTTP(t, a.url, "GET /v1/apps HTTP/1.1\r\nHost: "+host+"\r\nAuthorization: Bearer "+token+"\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 401 || !strings.Contains(body, "malformed API token") {
			t.Errorf("token %q: %d %s", token, resp.StatusCode, body)
		}
	}
}

// TestMethodNotAllowed checks that every 405 has an Allow header.
func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if _, err := a.c.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, path, allow string }{
		{"PUT", "/v1/apps", "GET, HEAD, POST"},
		{"POST", "/v1/apps/demo", "DELETE, GET, HEAD, PATCH"},
		{"POST", "/v1/apps/%00", "DELETE, GET, HEAD, PATCH"},
		{"DELETE", "/v1/keys", "GET, HEAD, POST"},
		{"PUT", "/v1/apps/demo/releases/1", "GET, HEAD"},
		{"POST", "/v1/info", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
		{"PATCH", "/v1/blobs/slugs/demo/x.tgz", "DELETE, GET, HEAD, PUT"},
	} {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := a.raw(t, tt.method, tt.path, "", "Bearer "+a.token)
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != tt.allow {
				t.Errorf("%d Allow %q, want 405 Allow %q (%s)", resp.StatusCode, resp.Header.Get("Allow"), tt.allow, body)
			}
		})
	}
}

// TestConfigLimits checks the limits of config vars: names, values and the
// total, and that a refused change changes nothing.
func TestConfigLimits(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if _, err := a.c.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateRelease(t.Context(), "demo", webRelease("demo:v1")); err != nil {
		t.Fatal(err)
	}
	vars := func(n, size int, prefix string) string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("%s%04d", prefix, i)] = strings.Repeat("v", size)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	const p = "/v1/apps/demo/config"
	// 60 vars of 900 bytes fit; 100 more do not.
	if resp, body := a.raw(t, "PATCH", p, vars(60, 900, "A"), "Bearer "+a.token); resp.StatusCode != 200 {
		t.Fatalf("60 vars of 900 bytes: %d %s", resp.StatusCode, body)
	}
	a.runRaw(t, []rawCase{
		{"total", "PATCH", p, vars(100, 900, "B"), 422, "invalid", "the config would hold 144800 bytes"},
		{"one huge value", "PATCH", p, `{"BIG": "` + strings.Repeat("x", types.MaxConfigValue+1) + `"}`, 422, "invalid", "config var BIG: value is 32769 bytes, the limit is 32768"},
		{"long name", "PATCH", p, `{"` + strings.Repeat("N", types.MaxConfigName+1) + `": "1"}`, 422, "invalid", "is 257 bytes, the limit is 256"},
		{"name with a dash", "PATCH", p, `{"A-B": "1"}`, 422, "invalid", `invalid config var name "A-B"`},
		{"name with a NUL", "PATCH", p, `{"A\u0000": "1"}`, 422, "invalid", `invalid config var name "A\x00"`},
	})
	cfg, err := a.c.GetConfig(t.Context(), "demo")
	if err != nil || len(cfg) != 60 {
		t.Errorf("config after refused changes has %d vars, %v; want 60", len(cfg), err)
	}
	// Unsetting is always allowed, so an app over the limit (from before
	// the limit existed) can get back under it.
	a.sql(t, `INSERT INTO config_vars (app_id, name, value) SELECT id, 'HUGE', repeat('x', 32768) FROM apps WHERE name = 'demo'`)
	a.sql(t, `INSERT INTO config_vars (app_id, name, value) SELECT id, 'HUGE2', repeat('x', 32768) FROM apps WHERE name = 'demo'`)
	a.runRaw(t, []rawCase{{"grow over the limit", "PATCH", p, `{"X": "1"}`, 422, "invalid", "the limit is 65536"}})
	rels, err := a.c.ListReleases(t.Context(), "demo")
	if err != nil {
		t.Fatal(err)
	}
	// Still over the limit after the unset: stored, but no release is made
	// of it (its formations would be too large to run).
	if _, id, err := a.c.UpdateConfigDeployment(t.Context(), "demo", map[string]*string{"HUGE": nil}); err != nil || id != "" {
		t.Errorf("unset a var of a config over the limit: deployment %q, %v; want it stored without a release", id, err)
	}
	if after, _ := a.c.ListReleases(t.Context(), "demo"); len(after) != len(rels) {
		t.Errorf("a config over the limit made release v%d", after[0].Version)
	}
	_, err = a.c.CreateRelease(t.Context(), "demo", webRelease("demo:v2"))
	wantAPIError(t, err, types.ErrInvalid, "unset vars of app demo first")
	// Back within the limit, a change makes a release again.
	if _, id, err := a.c.UpdateConfigDeployment(t.Context(), "demo", map[string]*string{"HUGE2": nil}); err != nil || id == "" {
		t.Errorf("unset back within the limit: deployment %q, %v", id, err)
	}
	// A release stored with a config over the limit cannot be rolled back
	// to.
	a.sql(t, `UPDATE releases SET config = jsonb_build_object('A', repeat('x', 30000), 'B', repeat('x', 30000), 'C', repeat('x', 30000)) WHERE version = 1
		AND app_id = (SELECT id FROM apps WHERE name = 'demo')`)
	_, err = a.c.Rollback(t.Context(), "demo", 1)
	wantAPIError(t, err, types.ErrInvalid, "the limit is 65536")
}

// TestReservedRoutes checks that custom routes cannot take the platform's
// domain or a name under it, IP literals, or wildcards of a top-level
// domain.
func TestReservedRoutes(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, app := range []string{"demo", "other"} {
		if _, err := a.c.CreateApp(t.Context(), app); err != nil {
			t.Fatal(err)
		}
	}
	route := func(domain string) string { return `{"domain": "` + domain + `"}` }
	const p = "/v1/apps/demo/routes"
	a.runRaw(t, []rawCase{
		{"the platform domain", "POST", p, route("localhost"), 422, "invalid", "reserved"},
		{"a wildcard of the platform domain", "POST", p, route("*.localhost"), 422, "invalid", "reserved"},
		{"another app's name", "POST", p, route("x.other.localhost"), 422, "invalid", "reserved"},
		{"its own default domain", "POST", p, route("demo.localhost"), 422, "invalid", "reserved"},
		{"an IPv4 literal", "POST", p, route("127.0.0.1"), 422, "invalid", "IP address"},
		{"a numeric last label", "POST", p, route("10.0.0.300"), 422, "invalid", "IP address"},
		{"a wildcard of a TLD", "POST", p, route("*.test"), 422, "invalid", "at least two labels"},
	})
	if _, err := a.c.AddRoute(t.Context(), "demo", types.RouteRequest{Domain: "*.example.test"}); err != nil {
		t.Errorf("a wildcard with two labels: %v", err)
	}
	if _, err := a.c.AddRoute(t.Context(), "demo", types.RouteRequest{Domain: "localhost.example.test"}); err != nil {
		t.Errorf("a domain that only contains the platform domain's name: %v", err)
	}
}

// certChain returns a PEM chain of n self-signed certificates for names,
// the first valid from notBefore for a day, with an RSA key of bits, and
// the PEM key of the first.
func certChain(t *testing.T, names []string, notBefore time.Time, bits, n int) (string, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notBefore, NotAfter: notBefore.Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	block := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return strings.Repeat(block, n), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}

// TestCertificateLimits checks the certificates a route refuses.
func TestCertificateLimits(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if _, err := a.c.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	names := []string{"www.example.test"}
	route := func(cert, key string) string {
		b, _ := json.Marshal(types.RouteRequest{Domain: "www.example.test", TLSCert: cert, TLSKey: key})
		return string(b)
	}
	now := time.Now()
	futureCert, futureKey := certChain(t, names, now.Add(2*time.Hour), 2048, 1)
	weakCert, weakKey := certChain(t, names, now.Add(-time.Hour), 1024, 1)
	longCert, longKey := certChain(t, names, now.Add(-time.Hour), 2048, 11)
	okCert, okKey := certChain(t, names, now.Add(-time.Hour), 2048, 10)
	const p = "/v1/apps/demo/routes"
	a.runRaw(t, []rawCase{
		{"not yet valid", "POST", p, route(futureCert, futureKey), 422, "invalid", "not valid before"},
		{"weak RSA", "POST", p, route(weakCert, weakKey), 422, "invalid", "RSA key has 1024 bits"},
		{"long chain", "POST", p, route(longCert, longKey), 422, "invalid", "more than 10 certificates, the limit is 10"},
		{"large chain", "POST", p, route(strings.Repeat(" ", types.MaxCertChain)+okCert, okKey), 422, "invalid", "the limit is 65536"},
		{"NUL before the chain", "POST", p, route("\x00"+okCert, okKey), 422, "invalid", "tls_cert holds a NUL byte or invalid UTF-8"},
		{"NUL after the key", "POST", p, route(okCert, okKey+"\x00"), 422, "invalid", "tls_key holds a NUL byte or invalid UTF-8"},
	})
	if _, err := a.c.AddRoute(t.Context(), "demo", types.RouteRequest{Domain: "www.example.test", TLSCert: okCert, TLSKey: okKey}); err != nil {
		t.Errorf("a chain of 10: %v", err)
	}
}

// TestInputCaps checks the caps on SSH key comments, process types and
// image references.
func TestInputCaps(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if _, err := a.c.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	key, _ := newPublicKey(t, strings.Repeat("c", types.MaxKeyComment+1))
	procs := map[string]types.Process{}
	for i := range types.MaxProcessTypes + 1 {
		procs[fmt.Sprintf("p%d", i)] = types.Process{Command: "/w"}
	}
	release := func(image string, procs map[string]types.Process) string {
		b, _ := json.Marshal(types.ReleaseRequest{Image: image, Processes: procs})
		return string(b)
	}
	web := map[string]types.Process{"web": {Command: "/server"}}
	const p = "/v1/apps/demo/releases"
	a.runRaw(t, []rawCase{
		{"long key comment", "POST", "/v1/keys", `{"key": "` + key + `"}`, 422, "invalid", "the key comment is 257 bytes, the limit is 256"},
		{"too many process types", "POST", p, release("demo:v1", procs), 422, "invalid", "101 process types, the limit is 100"},
		{"digest alone", "POST", p, release("sha256:abc", web), 422, "invalid", `invalid image reference "sha256:abc"`},
		{"image ID", "POST", p, release("sha256:"+strings.Repeat("a", 64), web), 422, "invalid", "no repository"},
		{"upper case", "POST", p, release("Demo:v1", web), 422, "invalid", `invalid image reference "Demo:v1"`},
		{"upper case taken for a registry", "POST", p, release("UPPER/case", web), 422, "invalid", "image names are lower case"},
		{"system settings", "POST", p, release("demo:v1", map[string]types.Process{"web": {Command: "/server",
			System: &types.SystemProcess{Port: 80, Binds: []keyspace.Bind{{Source: "/", Target: "/host"}}}}}),
			422, "invalid", `"system" is set only by the platform`},
	})
	for _, image := range []string{"demo", "demo:v2", "registry.example:5000/team/demo@sha256:" + strings.Repeat("a", 64)} {
		if _, err := a.c.CreateRelease(t.Context(), "demo", types.ReleaseRequest{Image: image, Processes: web}); err != nil {
			t.Errorf("image %q: %v", image, err)
		}
	}
}

// TestMirrorIsolatesApps gives one app a release whose config is far over
// the limits (stored before they existed): its formation cannot go to
// etcd, which the log says as such, and the periodic re-sync still
// repairs every other app's keys.
func TestMirrorIsolatesApps(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(c *controller.Config) { c.ResyncInterval = 100 * time.Millisecond })
	ctx := t.Context()
	for _, app := range []string{"big", "small"} {
		if _, err := a.c.CreateApp(ctx, app); err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.CreateRelease(ctx, app, webRelease(app+":v1")); err != nil {
			t.Fatal(err)
		}
	}
	a.sql(t, `UPDATE releases SET config = jsonb_build_object('A', repeat('x', 1500000), 'B', repeat('y', 1500000))
		WHERE app_id = (SELECT id FROM apps WHERE name = 'big')`)
	// A change of big makes the mirror write its formation again.
	if _, err := a.c.Scale(ctx, "big", map[string]int{"web": 2}); err != nil {
		t.Fatal(err)
	}
	route := a.space.Route("small.localhost")
	a.del(t, route)
	waitFor(t, "the re-sync to put back small's route", func() bool { return len(a.kvs(t, route)) == 1 })
	waitFor(t, "the log to say why big's formation is not mirrored", func() bool {
		return strings.Contains(a.logs.String(), "formation not mirrored") &&
			strings.Contains(a.logs.String(), "too large for etcd: the formation is")
	})
	if strings.Contains(a.logs.String(), "etcd is unreachable") {
		t.Errorf("the log calls a refused value an unreachable etcd:\n%s", a.logs)
	}
}
