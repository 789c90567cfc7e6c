package dashboard_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	dockerclient "github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/scheduler"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
	"github.com/gantryhq/gantry/layer1/logaggregator/logaggtest"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithPostgres(m))
}

// hostToken is the platform token of the tests' clusters.
const hostToken = "host-token"

// platform is a real controller, with a log aggregator, serving on
// loopback for one test.
type platform struct {
	url     string // the controller's base URL
	token   string // an API token
	db      string // the database URL
	cluster string
	c       *client.Client
	etcd    *clientv3.Client
	logURL  string
	logs    *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startPlatform serves a controller of a new cluster on a fresh database
// and embedded etcd, with a log aggregator, until the test ends.
func startPlatform(t *testing.T) *platform {
	t.Helper()
	dbURL := testenv.NewDatabase(t)
	etcd := testenv.Etcd(t)
	if err := controller.Migrate(t.Context(), dbURL, nil); err != nil {
		t.Fatal(err)
	}
	token, err := controller.CreateAdminToken(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	logURL := logaggtest.Start(t, hostToken)
	shipper, err := logclient.NewShipper(logclient.ShipperConfig{URL: logURL, Token: hostToken})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shipper.Close() })
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("platform logs:\n%s", logs)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cluster := fmt.Sprintf("cd-%d", time.Now().UnixNano()%1e9)
	srv, err := controller.New(controller.Config{
		DatabaseURL: dbURL,
		Cluster:     cluster,
		Etcd:        etcd,
		HostToken:   hostToken,
		Domain:      "localhost",
		GitURL:      "ssh://git@127.0.0.1:2222",
		RouterHTTP:  "http://localhost:8080",
		InternalURL: base,
		LogURL:      logURL,
		Events:      shipper,
		Version:     "0.1.0-test",
		Logger:      slog.New(slog.NewTextHandler(logs, nil)).With("component", "controller"),
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
		srv.Close()
	})
	return &platform{url: base, token: token, db: dbURL, cluster: cluster, c: client.New(base, token),
		etcd: etcd, logURL: logURL, logs: logs}
}

// startLayer0 runs a scheduler and one host agent of p's cluster on the
// real Docker Engine until the test ends, and removes the cluster's
// containers then.
func (p *platform) startLayer0(t *testing.T, docker *dockerclient.Client) {
	t.Helper()
	testenv.CleanupContainers(t, docker, p.cluster)
	shipper, err := logclient.NewShipper(logclient.ShipperConfig{URL: p.logURL, Token: hostToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := scheduler.Run(ctx, scheduler.Config{Cluster: p.cluster, Etcd: p.etcd, ID: "sched-1",
			Logger: slog.New(slog.NewTextHandler(p.logs, nil)).With("component", "scheduler")}); err != nil {
			t.Errorf("scheduler: %v", err)
		}
	})
	wg.Go(func() {
		if err := host.Run(ctx, host.Config{
			ID: "host-1", Cluster: p.cluster, Etcd: p.etcd, Docker: docker,
			APIAddr: "127.0.0.1:0", APIToken: hostToken, StateDir: t.TempDir(),
			LeaseTTL: 2 * time.Second, DrainDelay: 100 * time.Millisecond,
			StatsInterval: time.Second, Logs: shipper,
			Logger: slog.New(slog.NewTextHandler(p.logs, nil)).With("component", "host"),
		}); err != nil {
			t.Errorf("host agent: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		shipper.Close()
	})
}

// waitFor polls cond until it holds, failing the test after a minute:
// generous, for loaded machines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do sends a request to the controller and returns the answer with its
// body read.
func (p *platform) do(t *testing.T, method, path, body string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}
