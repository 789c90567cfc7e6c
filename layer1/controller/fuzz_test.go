package controller_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
	"github.com/gantryhq/gantry/layer1/logaggregator/logaggtest"
)

// fuzzPaths are the paths the API fuzz test fills with a random segment
// (path-escaped, so that any byte reaches the server): every endpoint but
// the builds and runs, which need a cluster to answer.
var fuzzPaths = []string{
	"/v1/apps/%s",
	"/v1/apps/%s/config",
	"/v1/apps/%s/releases",
	"/v1/apps/%s/formation",
	"/v1/apps/%s/rollback",
	"/v1/apps/%s/routes",
	"/v1/apps/%s/deploy",
	"/v1/apps/%s/deployments",
	"/v1/apps/%s/restart",
	"/v1/apps/%s/jobs",
	"/v1/apps/%s/log",
	"/v1/apps/victim/releases/%s",
	"/v1/apps/victim/deployments/%s",
	"/v1/apps/victim/deployments/%s/events",
	"/v1/apps/victim/routes/%s",
	"/v1/apps/victim/jobs/%s",
	"/v1/apps/victim/%s",
	"/v1/keys/%s",
	"/v1/%s",
	"/v1/blobs/%s",
}

// fuzzMethods are the methods the fuzz test sends.
var fuzzMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

// appState is what must not change of an app that a request does not name:
// its releases, config, routes and formation, as the API shows them.
func appState(t *testing.T, a *api, app string) string {
	t.Helper()
	var parts []string
	for _, p := range []string{"", "/releases", "/config", "/routes", "/formation", "/deploy"} {
		resp, body := a.raw(t, "GET", "/v1/apps/"+app+p, "", "Bearer "+a.token)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /v1/apps/%s%s: %d %s", app, p, resp.StatusCode, body)
		}
		parts = append(parts, string(body))
	}
	return strings.Join(parts, "\n")
}

// FuzzAPI sends requests with random path segments, bodies and headers to
// the real handlers (PostgreSQL, etcd, a log aggregator): no answer is a
// 5xx, every error answer has the API's shape with a code of the error
// table and the status of that code, every 405 says which methods are
// allowed, and the state of an app no request names stays as it was. The
// seed corpus, the inputs of the issue that made the API answer 500 or
// accept bad input, runs with go test.
func FuzzAPI(f *testing.F) {
	logURL := logaggtest.Start(f, "host-token")
	a := newAPI(f, func(c *controller.Config) { c.LogURL = logURL })
	ctx := f.Context()
	for _, app := range []string{"healthy", "victim"} {
		if _, err := a.c.CreateApp(ctx, app); err != nil {
			f.Fatal(err)
		}
		if _, err := a.c.CreateRelease(ctx, app, webRelease(app+":v1")); err != nil {
			f.Fatal(err)
		}
		if _, err := a.c.Scale(ctx, app, map[string]int{"web": 2}); err != nil {
			f.Fatal(err)
		}
		if _, err := a.c.UpdateConfig(ctx, app, map[string]*string{"A": ptr("1")}); err != nil {
			f.Fatal(err)
		}
		if _, err := a.c.AddRoute(ctx, app, types.RouteRequest{Domain: "www." + app + ".test"}); err != nil {
			f.Fatal(err)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	var healthy string

	seeds := []struct {
		method, path uint8
		seg, body    string
		header       uint8
		value        string
	}{
		{0, 0, "\x00", "", 0, ""},
		{0, 1, "\xff\xfe", "", 0, ""},
		{4, 17, "\x00", "", 0, ""},
		{0, 12, "\x00", "", 0, ""},
		{4, 14, "\xff\xfe", "", 0, ""},
		{0, 11, "v99999999999", "", 0, ""},
		{1, 4, "victim", `{"version": 2147483648}`, 0, ""},
		{1, 4, "victim", `{"version": 0}`, 0, ""},
		{1, 4, "victim", `{"version": 1e400}`, 0, ""},
		{2, 3, "victim", `{"web": 1e2}`, 0, ""},
		{2, 3, "victim", `{"web": 99999999999999999999}`, 0, ""},
		{3, 1, "victim", `{"A": 1}`, 0, ""},
		{3, 1, "victim", `{"A\u0000": "x"}`, 0, ""},
		{3, 1, "victim", `{"A": "` + strings.Repeat("x", 40000) + `"}`, 0, ""},
		{1, 5, "victim", `{"domain": "*.localhost"}`, 0, ""},
		{1, 5, "victim", `{"domain": "127.0.0.1"}`, 0, ""},
		{1, 5, "victim", `{"domain": "x", "tls_cert": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n", "tls_key": "k"}`, 0, ""},
		{1, 18, "keys", `{"key": "ssh-ed25519 AAAA"}`, 0, ""},
		{1, 2, "victim", `{"image": "sha256:abc", "processes": {"web": {"command": "/s"}}}`, 0, ""},
		{1, 2, "victim", `{"image": "x", "processes": {"web": {"command": "a | b"}}}`, 0, ""},
		{3, 6, "victim", `{"timeout": -1, "strategy": "x"}`, 0, ""},
		{1, 8, "victim", `{"type": "\u0000"}`, 0, ""},
		{2, 0, "victim", "", 0, ""},
		{2, 3, "victim", `{"we\u0000b": 1}`, 0, ""},
		{1, 5, "victim", `{"domain": "www.x.test", "tls_cert": "\u0000-----BEGIN CERTIFICATE-----\n", "tls_key": "\u0000"}`, 0, ""},
		{1, 16, "nope", "", 0, ""},
		{0, 19, "../../etc/passwd", "", 0, ""},
		{2, 19, "slugs/victim/x.tgz", "data", 0, ""},
		{0, 0, "victim", "", 1, "gty_\xff"},
		{0, 0, "victim", "", 1, "a b"},
		{1, 0, "", `{"name": "fz"}`, 2, "text/plain"},
		{5, 0, "victim", "", 0, ""},
		{6, 18, "apps", "", 0, ""},
		{0, 10, "victim", "", 0, ""},
		{1, 0, "", `[`, 0, ""},
		{1, 0, "", `{"name": "x"} {}`, 0, ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.seg, []byte(s.body), s.header, s.value)
	}
	f.Fuzz(func(t *testing.T, method, path uint8, seg string, body []byte, header uint8, value string) {
		// A request that names the healthy app may change it; the point
		// is what requests about other things do to it.
		if strings.Contains(seg, "healthy") || strings.Contains(string(body), "healthy") {
			return
		}
		if healthy == "" {
			healthy = appState(t, a, "healthy")
		}
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		target := a.url + fmt.Sprintf(fuzzPaths[int(path)%len(fuzzPaths)], url.PathEscape(seg))
		req, err := http.NewRequestWithContext(t.Context(), m, target, strings.NewReader(string(body)))
		if err != nil {
			return // not a request a client can send
		}
		req.Header.Set("Authorization", "Bearer "+a.token)
		switch header % 4 {
		case 1:
			req.Header.Set("Authorization", "Bearer "+value)
		case 2:
			req.Header.Set("Content-Type", value)
		case 3:
			req.Header.Set("Accept", value)
		}
		resp, err := client.Do(req)
		if err != nil {
			if strings.ContainsAny(value, "\x00\r\n") || strings.ContainsFunc(value, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
				return // the client refuses to send such a header
			}
			t.Fatalf("%s %s: %v", m, target, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s (body %q): %d %s", m, target, body, resp.StatusCode, b)
		}
		if resp.StatusCode == 405 && resp.Header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without an Allow header", m, target)
		}
		if resp.StatusCode >= 400 && m != "HEAD" {
			var eb types.ErrorBody
			if err := json.Unmarshal(b, &eb); err != nil || eb.Error == nil || eb.Error.Message == "" {
				t.Fatalf("%s %s: %d %q is not an error body", m, target, resp.StatusCode, b)
			}
			if e := types.ErrorForCode(eb.Error.Code); e == nil || e.Status != resp.StatusCode {
				t.Errorf("%s %s: code %q does not go with status %d", m, target, eb.Error.Code, resp.StatusCode)
			}
		}
		if got := appState(t, a, "healthy"); got != healthy {
			t.Fatalf("%s %s (body %q) changed the healthy app:\n%s\nwas\n%s", m, target, body, got, healthy)
		}
	})
}
