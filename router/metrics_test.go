package router

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAppMetrics(t *testing.T) {
	m := &appMetrics{apps: map[string]*appStats{}}
	for _, tc := range []struct {
		status int
		bytes  int64
		d      time.Duration
	}{
		{200, 100, 2 * time.Millisecond},
		{204, 0, 20 * time.Millisecond},
		{304, 0, 3 * time.Second},
		{404, 10, time.Microsecond},
		{502, 5, time.Minute},    // beyond the last bound
		{0, 0, time.Millisecond}, // the client left before an answer
	} {
		m.observe("web1", tc.status, tc.bytes, tc.d)
	}
	m.observe("other", 200, 1, time.Millisecond)
	want := `
# HELP gantry_router_requests_total Requests routed to the app, by status class.
# TYPE gantry_router_requests_total counter
gantry_router_requests_total{app="other",status_class="2xx"} 1
gantry_router_requests_total{app="web1",status_class="2xx"} 2
gantry_router_requests_total{app="web1",status_class="3xx"} 1
gantry_router_requests_total{app="web1",status_class="4xx"} 1
gantry_router_requests_total{app="web1",status_class="5xx"} 1
gantry_router_requests_total{app="web1",status_class="other"} 1
`
	if err := testutil.CollectAndCompare(m, strings.NewReader(want), "gantry_router_requests_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(m, "gantry_router_request_duration_seconds"); got != 2 {
		t.Errorf("%d latency histograms, want one per app", got)
	}
	s := m.apps["web1"]
	if n := s.buckets[len(latencyBounds)].Load(); n != 1 {
		t.Errorf("+Inf bucket holds %d, want the minute-long request", n)
	}
	if n := s.bytes.Load(); n != 115 {
		t.Errorf("bytes %d, want 115", n)
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	m := &appMetrics{apps: map[string]*appStats{}}
	m.observe("web1", 200, 1, time.Millisecond)
	if allocs := testing.AllocsPerRun(1000, func() { m.observe("web1", 200, 34, 2*time.Millisecond) }); allocs != 0 {
		t.Errorf("observe allocates %v times per request", allocs)
	}
}

// BenchmarkObserve is what the app metrics add to each request.
func BenchmarkObserve(b *testing.B) {
	m := &appMetrics{apps: map[string]*appStats{}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observe("web1", 200, 34, 2*time.Millisecond)
		}
	})
}
