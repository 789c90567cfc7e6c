package router

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/router/types"
)

// env is a real embedded etcd with the writes the controller (routes) and a
// host agent (discovery) would make, and a router following it.
type env struct {
	t     *testing.T
	etcd  *clientv3.Client
	space keyspace.Space
	disc  *discovery.Client
	lease clientv3.LeaseID
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs embedded etcd")
	}
	cli := testenv.Etcd(t)
	space := keyspace.MustNew("rt")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatalf("grant lease: %v", err)
	}
	return &env{t: t, etcd: cli, space: space, disc: discovery.New(cli, space, 5*time.Second, nil), lease: lease.ID}
}

func (e *env) putRoute(rt types.Route) {
	e.t.Helper()
	val, err := json.Marshal(rt)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.etcd.Put(ctx, e.space.Route(rt.Domain), string(val)); err != nil {
		e.t.Fatalf("put route: %v", err)
	}
}

func (e *env) deleteRoute(domain string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.etcd.Delete(ctx, e.space.Route(domain)); err != nil {
		e.t.Fatalf("delete route: %v", err)
	}
}

func (e *env) register(service, id, addr string) {
	e.t.Helper()
	if err := e.disc.Register(context.Background(), e.lease, service, discovery.Instance{ID: id, Addr: addr}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deregister(service, id string) {
	e.t.Helper()
	if err := e.disc.Deregister(context.Background(), service, id); err != nil {
		e.t.Fatal(err)
	}
}

// testRouter is a router serving on loopback listeners.
type testRouter struct {
	*Router
	httpAddr, httpsAddr string
	stop                func() error // cancels Serve's context and waits for it
}

// startRouter runs a router of e's cluster until the test ends. mod may
// change the config first.
func (e *env) startRouter(mod func(*Config)) *testRouter {
	t := e.t
	t.Helper()
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Cluster:       e.space.Cluster(),
		Etcd:          e.etcd,
		HTTPAddr:      httpLn.Addr().String(),
		HTTPSAddr:     httpsLn.Addr().String(),
		Logger:        testLogger(t),
		ShutdownDelay: -1,
		ShutdownGrace: 5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, httpLn, httpsLn) }()
	// stop may be called by a test's goroutine and by the cleanup at once:
	// both wait for the one result.
	var stopOnce sync.Once
	var stopErr error
	stop := func() error {
		stopOnce.Do(func() {
			cancel()
			stopErr = <-done
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("router Serve: %v", err)
		}
	})
	select {
	case <-r.ready:
	case err := <-done:
		t.Fatalf("router ended before it was ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("router not ready after 20s")
	}
	return &testRouter{Router: r, httpAddr: httpLn.Addr().String(), httpsAddr: httpsLn.Addr().String(), stop: stop}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() && os.Getenv("ROUTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// get sends a GET for host through the router's HTTP listener.
func (tr *testRouter) get(t *testing.T, client *http.Client, host, path string) (int, string, http.Header, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+tr.httpAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header, err
}

// waitFor polls cond until it holds or the deadline passes, and returns how
// long it took.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done within %v", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// httpClient returns a keep-alive client that sends no request twice on
// its own.
func httpClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
