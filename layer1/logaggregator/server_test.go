package logaggregator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/logaggregator"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

const testToken = "platform-token"

// aggregator is one real aggregator serving on a loopback port.
type aggregator struct {
	t    *testing.T
	srv  *logaggregator.Server
	url  string
	stop func()
}

// startAggregator serves a new Server on a loopback port (addr "" picks
// one) until the test ends or stop is called.
func startAggregator(t *testing.T, cfg logaggregator.Config, addr string) *aggregator {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	srv, err := logaggregator.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	a := &aggregator{t: t, srv: srv, url: "http://" + ln.Addr().String()}
	stopped := false
	a.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	}
	t.Cleanup(a.stop)
	return a
}

func line(app, source, typ string, index int, at time.Time, msg string) types.Line {
	l := types.Line{App: app, Source: source, Type: typ, Index: index, Time: at, Msg: msg}
	if typ != "" {
		l.Job = fmt.Sprintf("job-%s-%d", typ, index)
	}
	return l
}

func ndjson(t *testing.T, lines ...types.Line) string {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		j, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// post sends body to /v1/ingest and returns the status and body.
func (a *aggregator) post(body io.Reader, token string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(a.t.Context(), http.MethodPost, a.url+"/v1/ingest", body)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (a *aggregator) ingest(lines ...types.Line) {
	a.t.Helper()
	if code, body := a.post(strings.NewReader(ndjson(a.t, lines...)), testToken); code != http.StatusOK {
		a.t.Fatalf("ingest: %d %s", code, body)
	}
}

// query answers GET /v1/apps/{app}/log?params (not following).
func (a *aggregator) query(app string, params url.Values) []types.Line {
	a.t.Helper()
	resp := a.get(a.t.Context(), app, params)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		a.t.Fatalf("query %s %v: %d %s", app, params, resp.StatusCode, b)
	}
	var out []types.Line
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l types.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			a.t.Fatalf("answer line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		a.t.Fatal(err)
	}
	return out
}

func (a *aggregator) get(ctx context.Context, app string, params url.Values) *http.Response {
	a.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/v1/apps/"+app+"/log?"+params.Encode(), nil)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp
}

func msgs(lines []types.Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Msg
	}
	return out
}

var t0 = time.Date(2026, 11, 24, 22, 41, 3, 123000000, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestOrderBoundAndDuplicates(t *testing.T) {
	a := startAggregator(t, logaggregator.Config{Lines: 5}, "")
	// Out of order, across two requests, with a line sent twice.
	a.ingest(
		line("demo", "app", "web", 1, at(3), "three"),
		line("demo", "app", "web", 1, at(1), "one"),
		line("demo", "router", "", 0, at(2), "two"),
	)
	a.ingest(
		line("demo", "app", "web", 1, at(1), "one"), // already kept
		line("demo", "gantry", "", 0, at(0), "zero"),
		line("other", "app", "web", 1, at(0), "other app"),
	)
	if got, want := msgs(a.query("demo", nil)), []string{"zero", "one", "two", "three"}; !slices.Equal(got, want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
	// Past the bound the oldest go; a line older than a full history is
	// not kept.
	a.ingest(
		line("demo", "app", "web", 1, at(5), "five"),
		line("demo", "app", "web", 1, at(4), "four"),
		line("demo", "app", "web", 1, at(6), "six"),
		line("demo", "app", "web", 1, at(-1), "too old"),
	)
	if got, want := msgs(a.query("demo", nil)), []string{"two", "three", "four", "five", "six"}; !slices.Equal(got, want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
	if got := msgs(a.query("other", nil)); !slices.Equal(got, []string{"other app"}) {
		t.Fatalf("other app: %q", got)
	}
	if got := a.query("nothing-yet", nil); len(got) != 0 {
		t.Fatalf("an app without lines answered %v", got)
	}
}

func TestQueryFilters(t *testing.T) {
	a := startAggregator(t, logaggregator.Config{}, "")
	a.ingest(
		line("demo", "gantry", "", 0, at(0), "deployed v1"),
		line("demo", "app", "web", 1, at(1), "web one"),
		line("demo", "app", "web", 2, at(2), "web two"),
		line("demo", "app", "worker", 1, at(3), "worker one"),
		line("demo", "router", "", 0, at(4), "GET /"),
		line("demo", "gantry", "web", 1, at(5), "web.1 crashed (exit 1)"),
	)
	cases := []struct {
		name   string
		params url.Values
		want   []string
	}{
		{"all", nil, []string{"deployed v1", "web one", "web two", "worker one", "GET /", "web.1 crashed (exit 1)"}},
		{"last two", url.Values{"lines": {"2"}}, []string{"GET /", "web.1 crashed (exit 1)"}},
		{"none", url.Values{"lines": {"0"}}, nil},
		{"type", url.Values{"type": {"web"}}, []string{"web one", "web two", "web.1 crashed (exit 1)"}},
		{"job by id", url.Values{"job": {"job-web-2"}}, []string{"web two"}},
		{"job by process", url.Values{"job": {"web.1"}}, []string{"web one", "web.1 crashed (exit 1)"}},
		{"since", url.Values{"since": {at(3).Format(time.RFC3339Nano)}}, []string{"worker one", "GET /", "web.1 crashed (exit 1)"}},
		{"since and lines", url.Values{"since": {at(1).Format(time.RFC3339)}, "lines": {"1"}}, []string{"web.1 crashed (exit 1)"}},
		{"type and since", url.Values{"type": {"web"}, "since": {at(2).Format(time.RFC3339Nano)}}, []string{"web two", "web.1 crashed (exit 1)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := msgs(a.query("demo", tc.params)); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFollow(t *testing.T) {
	a := startAggregator(t, logaggregator.Config{}, "")
	a.ingest(line("demo", "app", "web", 1, at(0), "before"), line("demo", "app", "worker", 1, at(1), "worker before"))

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	resp := a.get(ctx, "demo", url.Values{"follow": {"1"}, "type": {"web"}})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %d", resp.StatusCode)
	}
	lines := make(chan types.Line)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l types.Line
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the follow stream ended")
			}
			return l.Msg
		case <-t.Context().Done():
			t.Fatal("no line before the test's deadline")
		}
		return ""
	}
	if got := next(); got != "before" {
		t.Fatalf("first line %q, want the history's", got)
	}
	// A streaming POST: each line is followed before the body ends.
	pr, pw := io.Pipe()
	posted := make(chan int, 1)
	go func() {
		code, _ := a.post(pr, testToken)
		posted <- code
	}()
	for i := range 3 {
		fmt.Fprint(pw, ndjson(t, line("demo", "app", "worker", 1, at(10+2*i), "filtered out")))
		fmt.Fprint(pw, ndjson(t, line("demo", "app", "web", 1, at(11+2*i), fmt.Sprintf("live %d", i))))
		if got, want := next(), fmt.Sprintf("live %d", i); got != want {
			t.Fatalf("followed %q, want %q", got, want)
		}
	}
	pw.Close()
	if code := <-posted; code != http.StatusOK {
		t.Fatalf("streamed ingest answered %d", code)
	}
	// The reader going away ends the answer; the server keeps serving.
	cancel()
	for range lines {
	}
	a.ingest(line("demo", "app", "web", 1, at(30), "after"))
	if got := msgs(a.query("demo", url.Values{"lines": {"1"}})); !slices.Equal(got, []string{"after"}) {
		t.Fatalf("after the follower left: %q", got)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	a := startAggregator(t, logaggregator.Config{DataDir: dir, Lines: 3}, "")
	for i := range 10 { // compacts the file along the way
		a.ingest(line("demo", "app", "web", 1, at(i), fmt.Sprintf("line %d", i)))
	}
	a.stop()

	// A crash left a torn last line.
	f, err := os.OpenFile(filepath.Join(dir, "demo.ndjson"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"app":"demo","source":"app","time":"2026-11-`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	b := startAggregator(t, logaggregator.Config{DataDir: dir, Lines: 3}, "")
	if got, want := msgs(b.query("demo", nil)), []string{"line 7", "line 8", "line 9"}; !slices.Equal(got, want) {
		t.Fatalf("after a restart: %q, want %q", got, want)
	}
	b.ingest(line("demo", "app", "web", 1, at(20), "line 20"))
	b.stop()
	c := startAggregator(t, logaggregator.Config{DataDir: dir, Lines: 3}, "")
	if got, want := msgs(c.query("demo", nil)), []string{"line 8", "line 9", "line 20"}; !slices.Equal(got, want) {
		t.Fatalf("after a second restart: %q, want %q", got, want)
	}
	data, err := os.ReadFile(filepath.Join(dir, "demo.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n"); n > 6 {
		t.Fatalf("the file holds %d lines, want at most twice the bound", n)
	}
}

func TestBadInput(t *testing.T) {
	a := startAggregator(t, logaggregator.Config{MaxBodyBytes: 1 << 20}, "")
	good := ndjson(t, line("demo", "app", "web", 1, at(0), "ok"))
	cases := []struct {
		name   string
		body   string
		token  string
		status int
		want   string
	}{
		{"no token", good, "", 401, "unauthorized"},
		{"wrong token", good, "nope", 401, "unauthorized"},
		{"not JSON", "hello\n", testToken, 400, "line 1: malformed JSON"},
		{"second line bad", good + `{"app":"demo"}` + "\n", testToken, 400, "line 2: invalid log line: source"},
		{"unknown field", `{"app":"demo","source":"app","time":"2026-01-01T00:00:00Z","msg":"x","color":"red"}`, testToken, 400, "unknown field"},
		{"bad app", strings.Replace(good, `"demo"`, `"Demo"`, 1), testToken, 400, "app \\\"Demo\\\""},
		{"no time", `{"app":"demo","source":"app","msg":"x"}`, testToken, 400, "time is missing"},
		{"wrong type", `{"app":"demo","source":"app","time":"2026-01-01T00:00:00Z","msg":5}`, testToken, 400, "field \\\"msg\\\""},
		{"two values", `{"app":"demo","source":"app","time":"2026-01-01T00:00:00Z","msg":"x"} {}`, testToken, 400, "more than one JSON value"},
		{"line break in msg", `{"app":"demo","source":"app","time":"2026-01-01T00:00:00Z","msg":"a\nb"}`, testToken, 400, "line break"},
		{"msg too long", ndjson(t, line("demo", "app", "", 0, at(0), strings.Repeat("x", types.MaxMsg+1))), testToken, 400, "longer than"},
		{"line too long", strings.Repeat(" ", types.MaxWireLine+10) + "\n", testToken, 413, "line 1 is longer than"},
		{"body too large", strings.Repeat(good, (1<<20)/len(good)+1), testToken, 413, "the body is larger than"},
		{"empty lines and no final break", "\n\n" + strings.TrimSuffix(good, "\n"), testToken, 200, `"accepted"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := a.post(strings.NewReader(tc.body), tc.token)
			if code != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("got %d %s, want %d with %q", code, body, tc.status, tc.want)
			}
			if code != 200 && !strings.Contains(body, `"error":{"code":`) {
				t.Fatalf("error without the error body: %s", body)
			}
		})
	}

	queries := []struct {
		name, path string
		status     int
		want       string
	}{
		{"bad app", "/v1/apps/Demo/log", 400, "app"},
		{"bad lines", "/v1/apps/demo/log?lines=x", 400, "lines="},
		{"negative lines", "/v1/apps/demo/log?lines=-1", 400, "lines="},
		{"bad follow", "/v1/apps/demo/log?follow=yes", 400, "follow="},
		{"bad since", "/v1/apps/demo/log?since=yesterday", 400, "since="},
		{"bad type", "/v1/apps/demo/log?type=Web!", 400, "type="},
		{"unknown path", "/v1/nothing", 404, "not_found"},
		{"wrong method", "/v1/ingest", 404, "not_found"},
	}
	for _, tc := range queries {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, a.url+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, b, tc.status, tc.want)
			}
		})
	}
	// The good lines before a bad one were kept.
	if got := a.query("demo", nil); len(got) != 1 || got[0].Msg != "ok" {
		t.Fatalf("kept %v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  logaggregator.Config
		want string
	}{
		{"ok", logaggregator.Config{DataDir: "/tmp/x", Token: "t"}, ""},
		{"no dir", logaggregator.Config{Token: "t"}, "DataDir"},
		{"no token", logaggregator.Config{DataDir: "/tmp/x"}, "Token"},
		{"lines", logaggregator.Config{DataDir: "/tmp/x", Token: "t", Lines: -1}, "Lines"},
		{"addr", logaggregator.Config{DataDir: "/tmp/x", Token: "t", Addr: "nope"}, "Addr"},
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

// TestDeleteApp forgets an app's log: its lines, its file, its followers'
// streams; other apps keep theirs, and a new app of the same name starts
// empty, also after a restart.
func TestDeleteApp(t *testing.T) {
	dir := t.TempDir()
	a := startAggregator(t, logaggregator.Config{DataDir: dir}, "")
	a.ingest(line("demo", "app", "web", 1, at(0), "old demo"), line("other", "app", "web", 1, at(0), "other"))
	resp := a.get(t.Context(), "demo", url.Values{"follow": {"1"}})
	defer resp.Body.Close()
	followed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		followed <- err
	}()

	del := func(app string) int {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, a.url+"/v1/apps/"+app+"/log", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		app  string
		want int
	}{
		{"demo", http.StatusNoContent},
		{"never-seen", http.StatusNoContent},
		{"Bad_Name", http.StatusBadRequest},
	} {
		if got := del(tc.app); got != tc.want {
			t.Errorf("DELETE the log of %q: %d, want %d", tc.app, got, tc.want)
		}
	}
	select {
	case err := <-followed:
		if err != nil {
			t.Errorf("the follower's stream ended with %v, want a clean end", err)
		}
	case <-t.Context().Done():
		t.Fatal("the follower's stream did not end")
	}
	if _, err := os.Stat(filepath.Join(dir, "demo.ndjson")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deleted app's file: %v, want it gone", err)
	}
	if got := msgs(a.query("demo", nil)); len(got) != 0 {
		t.Errorf("a deleted app's log: %q, want empty", got)
	}
	a.ingest(line("demo", "app", "web", 1, at(5), "new demo"))
	a.stop()
	b := startAggregator(t, logaggregator.Config{DataDir: dir}, "")
	if got, want := msgs(b.query("demo", nil)), []string{"new demo"}; !slices.Equal(got, want) {
		t.Errorf("the new app's log after a restart: %q, want %q", got, want)
	}
	if got, want := msgs(b.query("other", nil)), []string{"other"}; !slices.Equal(got, want) {
		t.Errorf("another app's log: %q, want %q", got, want)
	}
}
