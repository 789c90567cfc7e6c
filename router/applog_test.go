package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/router/types"
)

// sinkLines is an AppLogSink that keeps the lines it gets.
type sinkLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *sinkLines) RouterLine(app string, _ time.Time, line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, app+" "+string(line))
}

func (s *sinkLines) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

var _ AppLogSink = (*sinkLines)(nil)

func TestAppLogSink(t *testing.T) {
	e := newEnv(t)
	sink := &sinkLines{}
	tr := e.startRouter(func(c *Config) { c.AppLog = sink })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	e.register("demo-web", "job1", srv.Listener.Addr().String())
	e.putRoute(types.Route{Domain: "demo.test", App: "demo", Service: "demo-web"})
	client := httpClient(t)
	waitFor(t, "route", 5*time.Second, func() bool {
		status, _, _, _ := tr.get(t, client, "demo.test", "/")
		return status == 200
	})
	before := len(sink.all())
	for _, path := range []string{"/a?b=c", "/fail"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+tr.httpAddr+path, nil)
		req.Host = "demo.test"
		req.Header.Set("X-Request-Id", "rid-1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// No app, no line in any app's log.
	if status, _, _, _ := tr.get(t, client, "nothing.test", "/"); status != http.StatusNotFound {
		t.Fatalf("unknown host answered %d", status)
	}
	got := sink.all()[before:]
	want := []*regexp.Regexp{
		regexp.MustCompile(`^demo at=info method=GET path="/a\?b=c" host=demo\.test request_id=rid-1 fwd="127\.0\.0\.1" status=200 bytes=2 service=\d+ms protocol=http$`),
		regexp.MustCompile(`^demo at=error method=GET path="/fail" host=demo\.test request_id=rid-1 fwd="127\.0\.0\.1" status=500 bytes=2 service=\d+ms protocol=http$`),
	}
	if len(got) != len(want) {
		t.Fatalf("sink got %q, want %d lines", got, len(want))
	}
	for i, re := range want {
		if !re.MatchString(got[i]) {
			t.Errorf("line %q does not match %v", got[i], re)
		}
	}
}

// BenchmarkAppLine measures what a request routed to an app spends on its
// app log line, sink excepted.
func BenchmarkAppLine(b *testing.B) {
	req := httptest.NewRequest(http.MethodGet, "/some/path?x=1", nil)
	req.Host = "demo.localhost"
	x := &exchange{req: req, app: "demo", id: "0b9c1a52-1f0e-4c1e-8d2b-7f4e8c1d2a3b", status: 200, bytes: 1234, start: time.Now()}
	l := &accessLog{sink: discardSink{}}
	b.ReportAllocs()
	for b.Loop() {
		l.shipAppLine(x, time.Now())
	}
}

type discardSink struct{}

func (discardSink) RouterLine(string, time.Time, []byte) {}

func TestAppendQuoted(t *testing.T) {
	for _, s := range []string{"/", "/a?b=c&d", `/say"x`, `/back\slash`, "/tab\there", "/é", "/\x00"} {
		if got, want := string(appendQuoted(nil, s)), strconv.Quote(s); got != want {
			t.Errorf("appendQuoted(%q) = %s, want %s", s, got, want)
		}
	}
}
