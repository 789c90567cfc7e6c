package router

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/types"
)

// echoBackend answers every request with its name and counts them.
type echoBackend struct {
	*httptest.Server
	name  string
	count atomic.Int64
}

func newEchoBackend(t *testing.T, name string, mods ...func(*http.Server)) *echoBackend {
	b := &echoBackend{name: name}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.count.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Backend", name)
		io.WriteString(w, name)
	}))
	for _, mod := range mods {
		mod(b.Config)
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *echoBackend) addr() string { return b.Listener.Addr().String() }

func TestRoutesFollowEtcd(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	client := httpClient(t)
	b1 := newEchoBackend(t, "one")

	status, body, _, err := tr.get(t, client, "app.example.com", "/")
	if err != nil || status != http.StatusNotFound || !strings.Contains(body, "no app at <b>app.example.com</b>") {
		t.Fatalf("unknown host: %d %q %v; want 404 saying there is no app", status, body, err)
	}

	// The controller writes a route: with no instance it is a 503.
	e.putRoute(types.Route{Domain: "app.example.com", App: "app", Service: "app-web"})
	d := waitFor(t, "route visible", 30*time.Second, func() bool {
		status, _, _, _ := tr.get(t, client, "app.example.com", "/")
		return status == http.StatusServiceUnavailable
	})
	t.Logf("route visible after %v", d)
	_, body, _, _ = tr.get(t, client, "APP.example.com.:1234", "/")
	if !strings.Contains(body, "The app <b>app</b> has no running web process") {
		t.Errorf("503 page = %q", body)
	}

	// A host agent registers an instance.
	e.register("app-web", "job1", b1.addr())
	d = waitFor(t, "instance visible", 30*time.Second, func() bool {
		_, body, _, _ := tr.get(t, client, "app.example.com", "/")
		return body == "one"
	})
	t.Logf("instance visible after %v", d)

	// The route moves to another service.
	b2 := newEchoBackend(t, "two")
	e.register("other-web", "job2", b2.addr())
	e.putRoute(types.Route{Domain: "app.example.com", App: "app", Service: "other-web"})
	d = waitFor(t, "route change visible", 30*time.Second, func() bool {
		_, body, _, _ := tr.get(t, client, "app.example.com", "/")
		return body == "two"
	})
	t.Logf("route change visible after %v", d)

	// The instance goes away.
	e.deregister("other-web", "job2")
	d = waitFor(t, "deregistration visible", 30*time.Second, func() bool {
		status, _, _, _ := tr.get(t, client, "app.example.com", "/")
		return status == http.StatusServiceUnavailable
	})
	t.Logf("deregistration visible after %v", d)

	// The route goes away.
	e.deleteRoute("app.example.com")
	d = waitFor(t, "route removal visible", 30*time.Second, func() bool {
		status, _, _, _ := tr.get(t, client, "app.example.com", "/")
		return status == http.StatusNotFound
	})
	t.Logf("route removal visible after %v", d)

	// An invalid route is ignored, the others still work.
	e.putRoute(types.Route{Domain: "app.example.com", App: "app", Service: "app-web"})
	e.putRoute(types.Route{Domain: "bad.example.com", Service: "app-web"}) // no app
	waitFor(t, "route back", 30*time.Second, func() bool {
		_, body, _, _ := tr.get(t, client, "app.example.com", "/")
		return body == "one"
	})
	if status, _, _, _ := tr.get(t, client, "bad.example.com", "/"); status != http.StatusNotFound {
		t.Errorf("invalid route answered %d, want 404", status)
	}
}

func TestWildcardRoute(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	client := httpClient(t)
	wild, exact := newEchoBackend(t, "wild"), newEchoBackend(t, "exact")
	e.register("wild-web", "w1", wild.addr())
	e.register("exact-web", "e1", exact.addr())
	e.putRoute(types.Route{Domain: "*.apps.test", App: "wild", Service: "wild-web"})
	e.putRoute(types.Route{Domain: "special.apps.test", App: "exact", Service: "exact-web"})
	waitFor(t, "routes", 30*time.Second, func() bool {
		_, b1, _, _ := tr.get(t, client, "x.apps.test", "/")
		_, b2, _, _ := tr.get(t, client, "special.apps.test", "/")
		return b1 == "wild" && b2 == "exact"
	})
	for host, want := range map[string]int{"a.apps.test": 200, "A.Apps.Test:80": 200, "apps.test": 404, "a.b.apps.test": 404} {
		if status, _, _, _ := tr.get(t, client, host, "/"); status != want {
			t.Errorf("%s: %d, want %d", host, status, want)
		}
	}
}

func TestLoadSharedByInstances(t *testing.T) {
	e := newEnv(t)
	tr := e.startRouter(nil)
	client := httpClient(t)
	var bs []*echoBackend
	for i, name := range []string{"a", "b", "c"} {
		b := newEchoBackend(t, name)
		bs = append(bs, b)
		e.register("app-web", "job"+string(rune('1'+i)), b.addr())
	}
	e.putRoute(types.Route{Domain: "app.test", App: "app", Service: "app-web"})
	waitFor(t, "all three instances", 30*time.Second, func() bool {
		tr.get(t, client, "app.test", "/")
		return tr.table.Load().lookup("app.test") != nil && len(tr.table.Load().lookup("app.test").backends) == 3
	})
	for _, b := range bs {
		b.count.Store(0)
	}
	const n = 600
	errs := make(chan error, 8)
	var ok atomic.Int64
	for range 8 {
		go func() {
			for range n / 8 {
				status, _, _, err := tr.get(t, client, "app.test", "/")
				if err == nil && status == 200 {
					ok.Add(1)
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		<-errs
	}
	if ok.Load() != n {
		t.Fatalf("%d of %d requests succeeded", ok.Load(), n)
	}
	for _, b := range bs {
		c := b.count.Load()
		t.Logf("instance %s: %d requests", b.name, c)
		if c < n/6 {
			t.Errorf("instance %s got %d of %d requests", b.name, c, n)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	e := newEnv(t)
	var logBuf lockedBuffer
	tr := e.startRouter(func(c *Config) { c.AccessLog = &logBuf })
	seen := make(chan http.Header, 4)
	var seenHost atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		seenHost.Store(r.Host)
		seen <- h
		w.Header().Set("Connection", "X-Private")
		w.Header().Set("X-Private", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Public", "yes")
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	e.register("app-web", "job1", srv.Listener.Addr().String())
	e.putRoute(types.Route{Domain: "app.test", App: "app", Service: "app-web"})
	client := httpClient(t)
	waitFor(t, "route", 30*time.Second, func() bool {
		status, _, _, _ := tr.get(t, client, "app.test", "/")
		if status == 200 {
			<-seen
		}
		return status == 200
	})

	req, _ := http.NewRequest(http.MethodGet, "http://"+tr.httpAddr+"/p?q=1", nil)
	req.Host = "app.test:8080"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Proto", "spoofed")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("Proxy-Authorization", "Basic x")
	req.Header.Set("Te", "trailers")
	req.Header.Set("X-Kept", "kept")
	start := time.Now().UnixMilli()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	h := <-seen
	_, port, _ := net.SplitHostPort(tr.httpAddr)
	checks := map[string]string{
		"X-Forwarded-For":     "127.0.0.1",
		"X-Forwarded-Proto":   "http",
		"X-Forwarded-Port":    port,
		"X-Kept":              "kept",
		"X-Hop":               "",
		"Proxy-Authorization": "",
		"Te":                  "",
	}
	for k, want := range checks {
		if got := strings.Join(h[k], ","); got != want {
			t.Errorf("backend saw %s = %q, want %q", k, got, want)
		}
	}
	if got := seenHost.Load(); got != "app.test:8080" {
		t.Errorf("backend saw Host %q, want the client's", got)
	}
	id := h.Get("X-Request-Id")
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("generated X-Request-Id %q is not a UUID", id)
	}
	if got := resp.Header.Get("X-Request-Id"); got != id {
		t.Errorf("client got X-Request-Id %q, backend %q", got, id)
	}
	v, _ := strings.CutPrefix(h.Get("X-Request-Start"), "t=")
	if ms, err := strconv.ParseInt(v, 10, 64); err != nil || ms < start-1000 || ms > time.Now().UnixMilli() {
		t.Errorf("X-Request-Start = %q", h.Get("X-Request-Start"))
	}
	for _, k := range []string{"X-Private", "Keep-Alive"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("client got hop-by-hop %s: %q", k, v)
		}
	}
	if resp.Header.Get("X-Public") != "yes" {
		t.Error("client lost X-Public")
	}

	// A client's request id is kept.
	req, _ = http.NewRequest(http.MethodGet, "http://"+tr.httpAddr+"/", nil)
	req.Host = "app.test"
	req.Header.Set("X-Request-Id", "abc-123")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := (<-seen).Get("X-Request-Id"); got != "abc-123" || resp.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("request id not kept: backend %q, client %q", got, resp.Header.Get("X-Request-Id"))
	}

	// The access log has one line per request with the fields.
	tr.access.flush()
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	last := lines[len(lines)-1]
	re := regexp.MustCompile(`^time=\S+ app=app method=GET path=/ status=200 bytes=2 upstream_ms=\d+\.\d{3} total_ms=\d+\.\d{3} backend=127\.0\.0\.1:\d+ request_id=abc-123$`)
	if !re.MatchString(last) {
		t.Errorf("access log line %q does not match %v", last, re)
	}
	var second string
	for _, l := range lines {
		if strings.Contains(l, "path=/p ") {
			second = l
		}
	}
	if second == "" {
		t.Errorf("no access log line for /p (query left out): %q", lines)
	}
}

// lockedBuffer is an io.Writer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
