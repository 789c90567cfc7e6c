package appmetrics

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/discovery"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
	"github.com/gantryhq/gantry/layer1/metricstore"
	routertypes "github.com/gantryhq/gantry/router/types"
)

func TestQuantile(t *testing.T) {
	b := []bucket{{0.01, 50}, {0.1, 90}, {1, 99}, {math.Inf(1), 100}}
	for _, tc := range []struct {
		q, want float64
	}{
		{0.25, 0.005}, // half-way through the first bucket
		{0.5, 0.01},   // its top
		{0.7, 0.055},  // half-way through the second
		{0.99, 1},     // the top of the third
		{0.995, 1},    // in +Inf: the highest finite bound
		{0.95, 0.6},   // 5 of the third bucket's 9
		{0.0, 0},      // the bottom
	} {
		if got := quantile(tc.q, b); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(0.5, []bucket{{1, 0}, {math.Inf(1), 0}}); !math.IsNaN(got) {
		t.Errorf("quantile of nothing = %v, want NaN", got)
	}
}

// router is a router's metrics endpoint as the collector reads it, with
// counts the test sets.
type router struct {
	mu     sync.Mutex
	counts map[string][3]int // app -> 2xx, 5xx, requests under 10 ms
}

func (r *router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Header.Get("Authorization") != "Bearer platform" {
		http.Error(w, "no", http.StatusUnauthorized)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("# TYPE " + routertypes.RequestsMetric + " counter\n")
	for app, c := range r.counts {
		fmt.Fprintf(&b, "%s{app=%q,status_class=\"2xx\"} %d\n", routertypes.RequestsMetric, app, c[0])
		fmt.Fprintf(&b, "%s{app=%q,status_class=\"5xx\"} %d\n", routertypes.RequestsMetric, app, c[1])
	}
	b.WriteString("# TYPE " + routertypes.LatencyMetric + " histogram\n")
	for app, c := range r.counts {
		total := c[0] + c[1]
		fmt.Fprintf(&b, "%s_bucket{app=%q,le=\"0.01\"} %d\n", routertypes.LatencyMetric, app, c[2])
		fmt.Fprintf(&b, "%s_bucket{app=%q,le=\"1\"} %d\n", routertypes.LatencyMetric, app, total)
		fmt.Fprintf(&b, "%s_bucket{app=%q,le=\"+Inf\"} %d\n", routertypes.LatencyMetric, app, total)
		fmt.Fprintf(&b, "%s_sum{app=%q} 1\n%s_count{app=%q} %d\n", routertypes.LatencyMetric, app, routertypes.LatencyMetric, app, total)
	}
	w.Write([]byte(b.String()))
}

func (r *router) set(app string, ok, errs, fast int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[app] = [3]int{ok, errs, fast}
}

// TestCollector reads two routers and a host agent through etcd, as the
// controller's collector does, and checks the series it stores.
func TestCollector(t *testing.T) {
	etcd := testenv.Etcd(t)
	space := keyspace.MustNew(fmt.Sprintf("t%d", time.Now().UnixNano()))
	disc := discovery.New(etcd, space, 0, nil)
	lease, err := etcd.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	routers := []*router{{counts: map[string][3]int{}}, {counts: map[string][3]int{}}}
	for i, r := range routers {
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		addr := strings.TrimPrefix(srv.URL, "http://")
		if err := disc.Register(t.Context(), lease.ID, routertypes.Service, discovery.Instance{ID: fmt.Sprintf("router-%d", i), Addr: addr}); err != nil {
			t.Fatal(err)
		}
	}
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]hostclient.Job{
			{JobState: keyspace.JobState{JobID: "a", App: "web1", Type: "web"}, Stats: &hostclient.Stats{CPU: 0.25, MemoryRSS: 10 << 20}},
			{JobState: keyspace.JobState{JobID: "b", App: "web1", Type: "web"}, Stats: &hostclient.Stats{CPU: 0.5, MemoryRSS: 20 << 20}},
			{JobState: keyspace.JobState{JobID: "c", App: "web1", Type: "worker"}, Stats: &hostclient.Stats{CPU: 1, MemoryRSS: 5 << 20}},
			{JobState: keyspace.JobState{JobID: "d", App: "web1", Type: "web"}}, // not read yet
		})
	}))
	t.Cleanup(agent.Close)
	hostRec, _ := json.Marshal(keyspace.Host{ID: "h1", APIURL: agent.URL})
	if _, err := etcd.Put(t.Context(), space.Host("h1"), string(hostRec)); err != nil {
		t.Fatal(err)
	}

	store := metricstore.New(0)
	c, err := New(Config{Etcd: etcd, Space: space, Token: "platform", Store: store})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	routers[0].set("web1", 100, 0, 100)
	routers[1].set("web1", 50, 0, 50)
	c.Tick(t.Context(), t0)
	if got := store.Query(metricstore.Key{App: "web1", Name: types.MetricRequests}, time.Hour, t0); len(got) != 0 {
		t.Errorf("a rate after one reading: %v", got)
	}
	// In 10 s: 300 more 2xx and 100 5xx over both routers; 200 of the 400
	// under 10 ms, the rest under 1 s.
	routers[0].set("web1", 300, 60, 200)
	routers[1].set("web1", 150, 40, 150)
	t1 := t0.Add(10 * time.Second)
	c.Tick(t.Context(), t1)
	want := map[metricstore.Key]float64{
		{App: "web1", Name: types.MetricRequests}:            40, // 400 requests in 10 s
		{App: "web1", Name: types.MetricErrors}:              10,
		{App: "web1", Name: types.MetricP50}:                 0.01,
		{App: "web1", Name: types.MetricP99}:                 0.01 + 0.99*(396-200)/200.0,
		{App: "web1", Type: "web", Name: types.MetricCPU}:    0.75,
		{App: "web1", Type: "web", Name: types.MetricMemory}: 30 << 20,
		{App: "web1", Type: "worker", Name: types.MetricCPU}: 1,
	}
	for k, v := range want {
		got := store.Query(k, time.Hour, t1)
		if len(got) == 0 || math.Abs(got[len(got)-1].Value-v) > 1e-3 {
			t.Errorf("%+v = %v, want %v", k, got, v)
		}
	}

	// A router that restarted counts from zero.
	routers[0].set("web1", 20, 0, 20)
	t2 := t1.Add(10 * time.Second)
	c.Tick(t.Context(), t2)
	if got := store.Query(metricstore.Key{App: "web1", Name: types.MetricRequests}, time.Hour, t2); len(got) != 2 || got[1].Value != 2 {
		t.Errorf("after a router restart: %v, want 20 requests in 10 s from it and none from the other", got)
	}
}
