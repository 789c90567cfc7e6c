package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator"
	"github.com/gantryhq/gantry/layer1/logaggregator/client"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

const token = "platform-token"

// serve runs a real aggregator on ln until stop is called (or the test
// ends), with its files in dir.
func serve(t *testing.T, ln net.Listener, dir string) (stop func()) {
	t.Helper()
	srv, err := logaggregator.New(logaggregator.Config{DataDir: dir, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ctx, ln); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			srv.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// count returns how many lines the aggregator at base keeps for app.
func count(t *testing.T, base, app string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/apps/"+app+"/log?lines=100000", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l types.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// waitCount polls until the aggregator keeps want lines of app.
func waitCount(t *testing.T, base, app string, want int) {
	t.Helper()
	var got int
	for t.Context().Err() == nil {
		if got = count(t, base, app); got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the aggregator keeps %d lines of %s, want %d", got, app, want)
}

func newShipper(t *testing.T, cfg client.ShipperConfig) *client.Shipper {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = token
	}
	s, err := client.NewShipper(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appLine(i int) types.Line {
	return types.Line{App: "demo", Source: types.SourceApp, Type: "web", Job: "j1", Index: 1,
		Time: time.Date(2026, 1, 1, 0, 0, 0, i, time.UTC), Msg: fmt.Sprintf("line %d", i)}
}

func TestShipperShipsAndReconnects(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	base := "http://" + addr
	dir := t.TempDir()
	stop := serve(t, ln, dir)
	s := newShipper(t, client.ShipperConfig{URL: base})

	for i := range 100 {
		s.Ship(appLine(i))
	}
	waitCount(t, base, "demo", 100)

	// The aggregator goes away: lines wait in the buffer and go out once
	// it is back, over a new connection.
	stop()
	for i := 100; i < 200; i++ {
		s.Ship(appLine(i))
	}
	var ln2 net.Listener
	for {
		var err error
		if ln2, err = net.Listen("tcp", addr); err == nil {
			break
		}
		if t.Context().Err() != nil {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	serve(t, ln2, dir)
	waitCount(t, base, "demo", 200)

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if full, invalid := s.Dropped(); full != 0 || invalid != 0 {
		t.Fatalf("dropped %d (full) and %d (invalid), want none", full, invalid)
	}
}

func TestShipperDropsWhenFull(t *testing.T) {
	// Nothing listens there: every line stays in the buffer.
	ln := listen(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s := newShipper(t, client.ShipperConfig{URL: "http://" + addr, Buffer: 5, CloseTimeout: 200 * time.Millisecond})
	for i := range 12 {
		s.Ship(appLine(i))
	}
	s.Ship(types.Line{App: "Not-An-App", Source: "app", Time: time.Now(), Msg: "x"})
	full, invalid := s.Dropped()
	if full != 7 || invalid != 1 {
		t.Fatalf("dropped %d (full) and %d (invalid), want 7 and 1", full, invalid)
	}
	err := s.Close()
	if err == nil || !strings.Contains(err.Error(), "5 lines not shipped") {
		t.Fatalf("Close = %v, want the 5 lost lines counted", err)
	}
	s.Ship(appLine(99)) // after Close: dropped, never blocks
	if full, _ := s.Dropped(); full != 8 {
		t.Fatalf("dropped %d after Close, want 8", full)
	}
}

func TestShipperCloseFlushes(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	base := "http://" + ln.Addr().String()
	serve(t, ln, t.TempDir())
	s := newShipper(t, client.ShipperConfig{URL: base, CloseTimeout: time.Minute})
	for i := range 3000 {
		s.Ship(appLine(i))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := count(t, base, "demo"); got != 3000 {
		t.Fatalf("after Close the aggregator keeps %d lines, want 3000", got)
	}
}

func TestShipperConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  client.ShipperConfig
		want string
	}{
		{"ok", client.ShipperConfig{URL: "http://127.0.0.1:7072", Token: "t"}, ""},
		{"no URL", client.ShipperConfig{Token: "t"}, "URL"},
		{"path", client.ShipperConfig{URL: "http://h:1/x", Token: "t"}, "URL"},
		{"scheme", client.ShipperConfig{URL: "ftp://h:1", Token: "t"}, "URL"},
		{"no token", client.ShipperConfig{URL: "http://h:1"}, "Token"},
		{"buffer", client.ShipperConfig{URL: "http://h:1", Token: "t", Buffer: -1}, "Buffer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestShipperFallsBackToNDJSON runs the Shipper against an aggregator
// without the frames endpoint, as one of an older version: the Shipper
// finds the 404 and ships NDJSON to /v1/ingest from then on, losing
// nothing.
func TestShipperFallsBackToNDJSON(t *testing.T) {
	srv, err := logaggregator.New(logaggregator.Config{DataDir: t.TempDir(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	requests := map[string]int{}
	old := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests[r.Method+" "+r.URL.Path]++
		mu.Unlock()
		if r.URL.Path == "/v1/ingest/frames" {
			http.Error(w, `{"error":{"code":"not_found","message":"no endpoint"}}`, http.StatusNotFound)
			return
		}
		srv.Handler().ServeHTTP(w, r)
	})
	ln := listen(t, "127.0.0.1:0")
	hs := &http.Server{Handler: old, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	base := "http://" + ln.Addr().String()

	s := newShipper(t, client.ShipperConfig{URL: base})
	for i := range 50 {
		s.Ship(appLine(i))
	}
	s.RouterLine("demo", time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC), []byte(`at=info path="/" status=200`))
	waitCount(t, base, "demo", 51)
	for i := 51; i < 100; i++ {
		s.Ship(appLine(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := count(t, base, "demo"); got != 100 {
		t.Fatalf("the aggregator keeps %d lines, want 100", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if requests["POST /v1/ingest/frames"] != 1 || requests["POST /v1/ingest"] < 1 {
		t.Fatalf("requests %v: want one frames attempt, then NDJSON", requests)
	}
}

// query returns the lines the aggregator at base keeps for app.
func query(t *testing.T, base, app string) []types.Line {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/apps/"+app+"/log?lines=100000", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []types.Line
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l types.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return out
}

func TestShipperRouterLine(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	base := "http://" + ln.Addr().String()
	serve(t, ln, t.TempDir())
	s := newShipper(t, client.ShipperConfig{URL: base})
	at := time.Date(2026, 1, 1, 10, 0, 0, 0, time.FixedZone("x", 3600))
	cases := []struct {
		name, app, line, want string
	}{
		{"plain", "demo", `at=info method=GET path="/" status=200`, `at=info method=GET path="/" status=200`},
		{"line break cleaned", "demo", "at=error desc=\"a\nb\"", `at=error desc="a b"`},
		{"invalid UTF-8 cleaned", "demo", "path=\"/\xff\"", "path=\"/\uFFFD\""},
		{"invalid app dropped", "Demo", "at=info", ""},
	}
	for i, tc := range cases {
		s.RouterLine(tc.app, at.Add(time.Duration(i)*time.Second), []byte(tc.line))
	}
	waitCount(t, base, "demo", 3)
	got := query(t, base, "demo")
	for i, tc := range cases[:3] {
		t.Run(tc.name, func(t *testing.T) {
			l := got[i]
			if l.Msg != tc.want || l.Source != types.SourceRouter || !l.Time.Equal(at.Add(time.Duration(i)*time.Second)) || l.Type != "" || l.Job != "" {
				t.Fatalf("kept %+v, want msg %q from the router", l, tc.want)
			}
		})
	}
	if _, invalid := s.Dropped(); invalid != 1 {
		t.Fatalf("%d lines dropped as invalid, want 1", invalid)
	}
}

func TestShipperJobLines(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	base := "http://" + ln.Addr().String()
	serve(t, ln, t.TempDir())
	s := newShipper(t, client.ShipperConfig{URL: base})
	at := time.Date(2026, 1, 1, 10, 0, 0, 0, time.FixedZone("x", 3600))
	cases := []struct {
		name   string
		ship   func(at time.Time)
		source string
		want   string
	}{
		{"output", func(at time.Time) { s.JobLine("demo", "web", "j1", 1, at, "listening") }, types.SourceApp, "listening"},
		{"output cleaned", func(at time.Time) { s.JobLine("demo", "web", "j1", 1, at, "a\r\nb\xff") }, types.SourceApp, "a b\uFFFD"},
		{"event", func(at time.Time) { s.JobEvent("demo", "web", "j1", 1, at, "web.1 crashed (exit 3)") }, types.SourceGantry, "web.1 crashed (exit 3)"},
	}
	for i, tc := range cases {
		tc.ship(at.Add(time.Duration(i) * time.Second))
	}
	waitCount(t, base, "demo", len(cases))
	got := query(t, base, "demo")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := got[i]
			if l.Msg != tc.want || l.Source != tc.source || !l.Time.Equal(at.Add(time.Duration(i)*time.Second)) ||
				l.Type != "web" || l.Job != "j1" || l.Index != 1 {
				t.Fatalf("kept %+v, want msg %q from %s of web.1 (job j1)", l, tc.want, tc.source)
			}
		})
	}
}
