package router

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/router/types"
)

// latencyBounds are the upper bounds of the latency histogram's buckets,
// in seconds.
var latencyBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// statusClasses are the status_class labels by index (see classOf).
var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// appStats are one app's counters. Every field is updated atomically, so
// recording a request takes no lock and allocates nothing.
type appStats struct {
	status  [len(statusClasses)]atomic.Uint64
	bytes   atomic.Uint64
	buckets [len(latencyBounds) + 1]atomic.Uint64 // per bucket; the last is +Inf
	sum     atomic.Uint64                         // nanoseconds
}

// appMetrics holds the counters of every app the router has routed to
// since it started.
type appMetrics struct {
	mu   sync.RWMutex
	apps map[string]*appStats
}

func classOf(status int) int {
	if status < 100 || status > 599 {
		return 0
	}
	return status / 100
}

// observe records one request to app.
func (m *appMetrics) observe(app string, status int, bytes int64, d time.Duration) {
	m.mu.RLock()
	s := m.apps[app]
	m.mu.RUnlock()
	if s == nil {
		m.mu.Lock()
		if s = m.apps[app]; s == nil {
			s = &appStats{}
			m.apps[app] = s
		}
		m.mu.Unlock()
	}
	s.status[classOf(status)].Add(1)
	if bytes > 0 {
		s.bytes.Add(uint64(bytes))
	}
	secs := d.Seconds()
	i := 0
	for i < len(latencyBounds) && secs > latencyBounds[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.sum.Add(uint64(max(d, 0)))
}

var (
	requestsDesc = prometheus.NewDesc(types.RequestsMetric, "Requests routed to the app, by status class.", []string{"app", "status_class"}, nil)
	bytesDesc    = prometheus.NewDesc(types.BytesMetric, "Response body bytes sent to the app's clients.", []string{"app"}, nil)
	latencyDesc  = prometheus.NewDesc(types.LatencyMetric, "Time from a request's arrival to the end of its response.", []string{"app"}, nil)
)

var _ prometheus.Collector = (*appMetrics)(nil)

func (m *appMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- bytesDesc
	ch <- latencyDesc
}

func (m *appMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for app, s := range m.apps {
		for i, class := range statusClasses {
			if n := s.status[i].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), app, class)
			}
		}
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(s.bytes.Load()), app)
		cum := make(map[float64]uint64, len(latencyBounds))
		var count uint64
		for i, le := range latencyBounds {
			count += s.buckets[i].Load()
			cum[le] = count
		}
		count += s.buckets[len(latencyBounds)].Load()
		ch <- prometheus.MustNewConstHistogram(latencyDesc, count, time.Duration(s.sum.Load()).Seconds(), cum, app)
	}
}

// metricsRegistry is what GET /metrics serves: the apps' counters and
// the router's own.
func (r *Router) metricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	if r.stats != nil {
		reg.MustRegister(r.stats)
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gantry_router_connections", Help: "Client connections open."},
			func() float64 { return float64(r.conns.open.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gantry_router_connections_refused_total", Help: "Client connections refused at the connection cap."},
			func() float64 { return float64(r.conns.refused.Load()) }),
	)
	return reg
}

// metricsHandler serves /metrics to requests with the metrics token.
func (r *Router) metricsHandler() http.Handler {
	want := sha256.Sum256([]byte(r.cfg.MetricsToken))
	h := promhttp.HandlerFor(r.metricsRegistry(), promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, req *http.Request) {
		token, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gantry-router"`)
			http.Error(w, "missing or wrong token", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	})
	return mux
}

// serveMetrics serves /metrics on ln and keeps the router registered in
// discovery (types.Service) under a lease of its own until ctx ends.
func (r *Router) serveMetrics(ctx context.Context, ln net.Listener) {
	srv := &http.Server{Handler: r.metricsHandler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		WriteTimeout: 30 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() {
		// A router that hands its listeners over closes its copy of this
		// one when it drains (net.ErrClosed).
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			r.log.Warn("metrics listener stopped", "err", err)
		}
	})
	wg.Go(func() { r.register(ctx, ln.Addr().String()) })
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	wg.Wait()
}

// registerTTL is the TTL of the lease of the router's discovery entry.
const registerTTL = 10

// register keeps the router's metrics address in discovery: it grants a
// lease, registers, keeps the lease alive, and starts over when the lease
// is lost, until ctx ends; then it revokes the lease.
func (r *Router) register(ctx context.Context, addr string) {
	backoff := time.Second
	for ctx.Err() == nil {
		lease, err := r.registerOnce(ctx, addr)
		if err == nil {
			backoff = time.Second
			r.keepAlive(ctx, lease)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			r.cfg.Etcd.Revoke(rctx, lease)
			cancel()
			continue
		}
		r.log.Warn("cannot register the router's metrics in discovery; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (r *Router) registerOnce(ctx context.Context, addr string) (clientv3.LeaseID, error) {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	lease, err := r.cfg.Etcd.Grant(gctx, registerTTL)
	if err != nil {
		return 0, err
	}
	inst := discovery.Instance{ID: r.cfg.ID, Addr: addr, Meta: map[string]string{"cluster": r.cfg.Cluster}}
	if err := r.disc.Register(gctx, lease.ID, types.Service, inst); err != nil {
		return 0, err
	}
	return lease.ID, nil
}

// keepAlive renews lease until ctx ends or the lease is lost.
func (r *Router) keepAlive(ctx context.Context, lease clientv3.LeaseID) {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := r.cfg.Etcd.KeepAlive(kctx, lease)
	if err != nil {
		return
	}
	for range ch {
	}
}
