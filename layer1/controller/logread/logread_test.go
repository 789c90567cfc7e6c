package logread_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/logread"
	"github.com/gantryhq/gantry/layer1/logaggregator"
	"github.com/gantryhq/gantry/layer1/logaggregator/types"
)

const token = "host-token"

// aggregator is a real log aggregator on a loopback port that a test can
// stop and start again on the same port with the same data. The port
// stays bound between the two, so nothing else takes it.
type aggregator struct {
	dir string
	ln  *net.TCPListener
	mu  sync.Mutex
	// stopFn stops the running server; nil when stopped.
	stopFn func()
}

// startAggregator serves a log aggregator until the test ends.
func startAggregator(t *testing.T) *aggregator {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &aggregator{dir: t.TempDir(), ln: ln.(*net.TCPListener)}
	t.Cleanup(func() {
		a.stop()
		a.ln.Close()
	})
	a.start(t)
	return a
}

func (a *aggregator) url() string { return "http://" + a.ln.Addr().String() }

// start serves the aggregator on its port; it must be stopped.
func (a *aggregator) start(t *testing.T) {
	t.Helper()
	srv, err := logaggregator.New(logaggregator.Config{DataDir: a.dir, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.ln.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	kept := &keptListener{TCPListener: a.ln}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, kept) }()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopFn = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("log aggregator: %v", err)
		}
		srv.Close()
	}
}

// stop stops the aggregator: its followers' streams end, new connections
// wait for start.
func (a *aggregator) stop() {
	a.mu.Lock()
	stop := a.stopFn
	a.stopFn = nil
	a.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// keptListener is a server's view of a listener that outlives it: Close
// ends the server's Accept without closing the socket.
type keptListener struct {
	*net.TCPListener
	closed atomic.Bool
}

func (l *keptListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if l.closed.Load() {
		if c != nil {
			c.Close()
		}
		return nil, net.ErrClosed
	}
	return c, err
}

func (l *keptListener) Close() error {
	l.closed.Store(true)
	return l.TCPListener.SetDeadline(time.Now()) // wakes Accept
}

// ingest keeps lines in the aggregator at url, as a shipper would.
func ingest(t *testing.T, url string, lines ...types.Line) {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/ingest", &b)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ingest at %s: %s", url, resp.Status)
	}
}

var t0 = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

// numbered returns a line of app demo numbered n (its text), written n
// milliseconds after t0.
func numbered(n int, typ string) types.Line {
	return types.Line{App: "demo", Source: types.SourceApp, Type: typ, Index: 1, Job: "job-" + typ,
		Time: t0.Add(time.Duration(n) * time.Millisecond), Msg: fmt.Sprint(n)}
}

// now returns a line of app demo written now.
func now(msg string) types.Line {
	return types.Line{App: "demo", Source: types.SourceApp, Type: "web", Index: 1, Job: "job-web", Time: time.Now().UTC(), Msg: msg}
}

// register publishes host records naming the aggregators of hosts (host
// ID to URL) in space.
func register(t *testing.T, etcd *clientv3.Client, space keyspace.Space, hosts map[string]string) {
	t.Helper()
	for id, u := range hosts {
		v, err := json.Marshal(keyspace.Host{ID: id, Addr: "127.0.0.1", LogURL: u, Healthy: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err = etcd.Put(ctx, space.Host(id), string(v))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// logBuffer collects a Reader's log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newReader(t *testing.T, etcd *clientv3.Client, space keyspace.Space, fallback string, logs *logBuffer) *logread.Reader {
	t.Helper()
	r, err := logread.New(logread.Config{Etcd: etcd, Space: space, Fallback: fallback, Token: token,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// texts returns the texts of NDJSON lines.
func texts(raws [][]byte) ([]string, error) {
	out := []string{}
	for _, raw := range raws {
		var l types.Line
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, fmt.Errorf("line %q: %w", raw, err)
		}
		out = append(out, l.Msg)
	}
	return out, nil
}

// waitTimeout bounds a wait of a test: generous for a loaded machine, so
// that a regression fails its test with a message rather than hang the
// run.
const waitTimeout = 2 * time.Minute

// waitContext returns a context that ends with the test or after
// waitTimeout.
func waitContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd")
	}
	t.Parallel()
	etcd := testenv.Etcd(t)
	a, b := startAggregator(t), startAggregator(t)
	down := "http://" + testenv.FreeAddr(t)
	ingest(t, a.url(), numbered(1, "web"), numbered(3, "web"), numbered(5, "worker"))
	ingest(t, b.url(), numbered(2, "web"), numbered(4, "web"), numbered(6, "worker"))
	for i, tc := range []struct {
		name     string
		hosts    map[string]string
		fallback string
		q        types.Query
		want     []string
		err      error
		warn     string // in the Reader's log
	}{
		{name: "one host", hosts: map[string]string{"h1": a.url()}, q: types.Query{Lines: 100},
			want: []string{"1", "3", "5"}},
		{name: "two hosts merged by time", hosts: map[string]string{"h1": a.url(), "h2": b.url()}, q: types.Query{Lines: 100},
			want: []string{"1", "2", "3", "4", "5", "6"}},
		{name: "the newest lines of the merge", hosts: map[string]string{"h1": a.url(), "h2": b.url()}, q: types.Query{Lines: 4},
			want: []string{"3", "4", "5", "6"}},
		{name: "filters passed on", hosts: map[string]string{"h1": a.url(), "h2": b.url()}, q: types.Query{Lines: 100, Type: "worker"},
			want: []string{"5", "6"}},
		{name: "since passed on", hosts: map[string]string{"h1": a.url(), "h2": b.url()},
			q: types.Query{Lines: 100, Since: t0.Add(4 * time.Millisecond)}, want: []string{"4", "5", "6"}},
		{name: "no lines asked", hosts: map[string]string{"h1": a.url(), "h2": b.url()}, q: types.Query{},
			want: []string{}},
		{name: "a host down is left out", hosts: map[string]string{"h1": a.url(), "h2": b.url(), "h3": down}, q: types.Query{Lines: 100},
			want: []string{"1", "2", "3", "4", "5", "6"}, warn: "log aggregator left out of a log query"},
		{name: "hosts sharing an aggregator read it once", hosts: map[string]string{"h1": a.url(), "h2": a.url() + "/"}, q: types.Query{Lines: 100},
			want: []string{"1", "3", "5"}},
		{name: "a host naming none ships to the fallback", hosts: map[string]string{"h1": a.url(), "h2": ""}, fallback: b.url(),
			q: types.Query{Lines: 100}, want: []string{"1", "2", "3", "4", "5", "6"}},
		{name: "no host registered: the fallback", fallback: b.url(), q: types.Query{Lines: 2},
			want: []string{"4", "6"}},
		{name: "every aggregator down", hosts: map[string]string{"h1": down}, q: types.Query{Lines: 100},
			err: logread.ErrUnavailable},
		{name: "no aggregator", hosts: map[string]string{"h1": ""}, q: types.Query{Lines: 100},
			err: logread.ErrNoAggregator},
	} {
		t.Run(tc.name, func(t *testing.T) {
			space := keyspace.MustNew(fmt.Sprintf("history-%d", i))
			register(t, etcd, space, tc.hosts)
			var logs logBuffer
			r := newReader(t, etcd, space, tc.fallback, &logs)
			lines, err := r.History(t.Context(), "demo", tc.q)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("History: %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := texts(lines)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("History = %q, want %q", got, tc.want)
			}
			if tc.warn != "" && !strings.Contains(logs.String(), tc.warn) {
				t.Fatalf("the log does not say %q:\n%s", tc.warn, logs.String())
			}
		})
	}
}

func TestDelete(t *testing.T) {
	if testing.Short() {
		t.Skip("needs etcd")
	}
	t.Parallel()
	etcd := testenv.Etcd(t)
	a, b := startAggregator(t), startAggregator(t)
	space := keyspace.MustNew("delete")
	register(t, etcd, space, map[string]string{"h1": a.url(), "h2": b.url(), "h3": "http://" + testenv.FreeAddr(t)})
	ingest(t, a.url(), numbered(1, "web"))
	ingest(t, b.url(), numbered(2, "web"))
	r := newReader(t, etcd, space, "", &logBuffer{})
	if err := r.Delete(t.Context(), "demo"); err == nil || !strings.Contains(err.Error(), "delete the log of demo") {
		t.Fatalf("Delete with a host down = %v, want its error", err)
	}
	// The others forgot it.
	register(t, etcd, space, map[string]string{"h3": a.url()})
	lines, err := r.History(t.Context(), "demo", types.Query{Lines: 100})
	if err != nil || len(lines) != 0 {
		t.Fatalf("History after Delete = %q, %v; want none", lines, err)
	}
}
