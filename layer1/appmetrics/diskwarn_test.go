package appmetrics

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/host"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
	"github.com/gantryhq/gantry/layer1/logaggregator/logaggtest"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
	"github.com/gantryhq/gantry/layer1/metricstore"
)

// TestDiskWarning runs a real host agent on the real Docker Engine and a
// real log aggregator, with the warning threshold at 1% so that the
// machine's disks are over it, and checks that several rounds of the
// collector put one warning per disk into the log of gantry-controller.
func TestDiskWarning(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: needs Docker and etcd")
	}
	etcd := testenv.Etcd(t)
	docker := testenv.Docker(t)
	cluster := fmt.Sprintf("dw-%d", time.Now().UnixNano()%1e9)
	space := keyspace.MustNew(cluster)
	testenv.CleanupContainers(t, docker, cluster)
	const token = "platform"
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- host.Run(ctx, host.Config{
			ID: "host-1", Cluster: cluster, Etcd: etcd, Docker: docker,
			APIAddr: "127.0.0.1:0", APIToken: token, StateDir: t.TempDir(),
			LeaseTTL: 2 * time.Second, StatsInterval: 100 * time.Millisecond,
			Logger: logger.With("component", "host"),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("host agent: %v", err)
		}
	})

	// The agent's record, and its first reading of its disks.
	var disks []hostclient.Disk
	poll(t, "the host agent's first reading of its disks", func() bool {
		resp, err := etcd.Get(t.Context(), space.Host("host-1"), clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) == 0 {
			return false
		}
		var h keyspace.Host
		if json.Unmarshal(resp.Kvs[0].Value, &h) != nil || h.APIURL == "" {
			return false
		}
		u, err := hostclient.New(h.APIURL, token).Usage(t.Context())
		disks = u.Disks
		return err == nil && !u.At.IsZero() && len(disks) > 0
	})

	logURL := logaggtest.Start(t, token)
	shipper, err := logclient.NewShipper(logclient.ShipperConfig{URL: logURL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shipper.Close() })
	c, err := New(Config{Etcd: etcd, Space: space, Token: token, Store: metricstore.New(0),
		DiskWarningPercent: 1, Events: shipper, Logger: logger.With("component", "appmetrics")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range 5 {
		c.Tick(t.Context(), now.Add(time.Duration(i)*10*time.Second))
	}
	// Close ships what the Shipper holds before it returns.
	if err := shipper.Close(); err != nil {
		t.Fatal(err)
	}

	var warnings []logtypes.Line
	for _, l := range readLog(t, logURL, token, types.SystemAppController) {
		if strings.HasPrefix(l.Msg, "disk almost full") {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != len(disks) {
		t.Fatalf("%d warnings in the log of %s over 5 rounds, want one for each of the %d disks %v: %v\nlogs:\n%s",
			len(warnings), types.SystemAppController, len(disks), disks, warnings, logs)
	}
	for _, d := range disks {
		n := 0
		for _, l := range warnings {
			if strings.Contains(l.Msg, "on host host-1: "+d.Path+" is ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d warnings of host-1 and %s, want 1: %v", n, d.Path, warnings)
		}
	}
	for _, l := range warnings {
		if l.Source != logtypes.SourceGantry || !strings.Contains(l.Msg, "past the 1% warning: run `gantry gc`") {
			t.Errorf("warning %q (source %s), want a platform event that says what to do", l.Msg, l.Source)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"disk almost full on host host-1"); n != len(disks) {
		t.Errorf("%d warnings in the collector's log, want %d:\n%s", n, len(disks), logs)
	}
}

// readLog returns every line the aggregator at base keeps of app.
func readLog(t *testing.T, base, token, app string) []logtypes.Line {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/apps/"+app+"/log?lines=1000", nil)
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
		t.Fatalf("GET the log of %s: %s", app, resp.Status)
	}
	var lines []logtypes.Line
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l logtypes.Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// syncBuffer is a log buffer that several goroutines write.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
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

// poll calls cond until it holds, failing the test after 30 s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
