package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/appmetrics"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/types"
	"github.com/gantryhq/gantry/layer1/metricstore"
	routertypes "github.com/gantryhq/gantry/router/types"
)

// scrapeTimeout bounds the collection of the host agents' metrics for one
// scrape of the cluster.
const scrapeTimeout = 5 * time.Second

// newRegistry returns the controller's own metrics: its process and Go
// runtime, labelled component="controller".
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	prometheus.WrapRegistererWith(prometheus.Labels{"component": "controller"}, reg).MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// clusterMetrics serves GET /metrics: one Prometheus scrape target for the
// whole cluster. It merges the controller's own metrics with those of
// every host agent that holds a host record (each series labelled with its
// host) and of every router registered in discovery (labelled with its
// router), and says per source whether it answered (gantry_host_scrape_up,
// gantry_router_scrape_up).
func (s *Server) clusterMetrics(w http.ResponseWriter, r *http.Request) {
	families := map[string]*dto.MetricFamily{}
	own, err := s.metrics.Gather()
	if err != nil {
		s.log.Warn("gather the controller's metrics", "err", err)
	}
	for _, f := range own {
		families[f.GetName()] = f
	}
	sources, err := s.metricSources(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	up := map[string]*dto.MetricFamily{}
	for _, kind := range []string{"host", "router"} {
		up[kind] = &dto.MetricFamily{
			Name: proto.String("gantry_" + kind + "_scrape_up"),
			Help: proto.String("Whether the " + kind + " answered this scrape (1) or not (0)."),
			Type: dto.MetricType_GAUGE.Enum(),
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, src := range sources {
		wg.Go(func() {
			fams, err := src.fetch(ctx)
			mu.Lock()
			defer mu.Unlock()
			value := 1.0
			if err != nil {
				s.log.Warn("scrape a metrics source", src.kind, src.id, "err", err)
				value = 0
			}
			u := up[src.kind]
			u.Metric = append(u.Metric, &dto.Metric{
				Label: []*dto.LabelPair{{Name: proto.String(src.kind), Value: proto.String(src.id)}},
				Gauge: &dto.Gauge{Value: proto.Float64(value)},
			})
			for _, f := range fams {
				mergeFamily(families, f, src.kind, src.id)
			}
		})
	}
	wg.Wait()
	for _, u := range up {
		if len(u.Metric) > 0 {
			families[u.GetName()] = u
		}
	}

	names := make([]string, 0, len(families))
	for name := range families {
		names = append(names, name)
	}
	slices.Sort(names)
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	enc := expfmt.NewEncoder(w, format)
	for _, name := range names {
		if err := enc.Encode(families[name]); err != nil {
			s.log.Warn("write metrics", "family", name, "err", err)
			return
		}
	}
}

// metricSource is one endpoint whose metrics the cluster's /metrics
// merges: kind is "host" or "router", id its name.
type metricSource struct {
	kind, id string
	fetch    func(context.Context) (map[string]*dto.MetricFamily, error)
}

// metricSources lists the host agents with a host record and the routers
// registered in discovery.
func (s *Server) metricSources(ctx context.Context) ([]metricSource, error) {
	hosts, err := s.listHosts(ctx)
	if err != nil {
		return nil, err
	}
	var out []metricSource
	for _, h := range hosts {
		out = append(out, metricSource{kind: "host", id: h.ID, fetch: s.hosts.get(h.APIURL).Metrics})
	}
	routers, _, err := discovery.New(s.cfg.Etcd, s.space, etcdkv.Timeout, s.log).List(ctx, routertypes.Service)
	if err != nil {
		return nil, etcdkv.Err("list the routers", err)
	}
	for _, rt := range routers {
		out = append(out, metricSource{kind: "router", id: rt.ID, fetch: func(ctx context.Context) (map[string]*dto.MetricFamily, error) {
			return appmetrics.ScrapeRouter(ctx, http.DefaultClient, rt.Addr, s.cfg.HostToken)
		}})
	}
	return out, nil
}

// mergeFamily adds f's metrics to the family of the same name in into,
// each with the label name=value unless it has that label already. A
// family whose type differs from the one already there is left out.
func mergeFamily(into map[string]*dto.MetricFamily, f *dto.MetricFamily, name, value string) {
	for _, m := range f.Metric {
		has := slices.ContainsFunc(m.Label, func(l *dto.LabelPair) bool { return l.GetName() == name })
		if !has {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)})
		}
	}
	have, ok := into[f.GetName()]
	switch {
	case !ok:
		into[f.GetName()] = f
	case have.GetType() == f.GetType():
		have.Metric = append(have.Metric, f.Metric...)
	}
}

// listHosts returns the host records in etcd: the hosts whose lease is
// alive.
func (s *Server) listHosts(ctx context.Context) ([]keyspace.Host, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	resp, err := s.cfg.Etcd.Get(ctx, s.space.Hosts(), clientv3.WithPrefix())
	if err != nil {
		return nil, etcdkv.Err("list hosts", err)
	}
	hosts := make([]keyspace.Host, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var h keyspace.Host
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			s.log.Warn("undecodable host record", "key", string(kv.Key), "err", err)
			continue
		}
		if h.APIURL != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts, nil
}

// historySaveInterval is how often the metric history is saved to
// Config.MetricsFile.
const historySaveInterval = time.Minute

// collectMetrics feeds the apps' metric history every 10 s from the
// routers and host agents until ctx ends, and keeps it in
// Config.MetricsFile across restarts. It also warns when a host's disk
// passes Config.DiskWarningPercent (see package appmetrics).
func (s *Server) collectMetrics(ctx context.Context) {
	if file := s.cfg.MetricsFile; file != "" {
		if f, err := os.Open(file); err == nil {
			if err := s.history.Load(f); err != nil {
				s.log.Warn("metric history not loaded; starting empty", "file", file, "err", err)
			}
			f.Close()
		}
		defer s.saveHistory()
	}
	c, err := appmetrics.New(appmetrics.Config{
		Etcd: s.cfg.Etcd, Space: s.space, Token: s.cfg.HostToken, Store: s.history,
		DiskWarningPercent: s.cfg.DiskWarningPercent, Events: s.cfg.Events,
		Logger: s.log.With("worker", "appmetrics"),
	})
	if err != nil {
		s.log.Error("no app metrics", "err", err)
		return
	}
	tick := time.NewTicker(appmetrics.DefaultInterval)
	defer tick.Stop()
	var saved time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			c.Tick(ctx, now)
			if time.Since(saved) >= historySaveInterval {
				s.history.Prune(now)
				s.saveHistory()
				saved = time.Now()
			}
		}
	}
}

// saveHistory writes the metric history to Config.MetricsFile, through a
// temporary file so that a crash never leaves half of it.
func (s *Server) saveHistory() {
	file := s.cfg.MetricsFile
	if file == "" {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err == nil {
		err = s.history.Save(tmp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), file)
		}
		os.Remove(tmp.Name())
	}
	if err != nil {
		s.log.Warn("metric history not saved", "file", file, "err", err)
	}
}

// appMetrics serves GET /v1/apps/{app}/metrics?since=1h: the app's key
// series over the last since (at most 24 h; 10 s points up to an hour,
// minute means beyond).
func (s *Server) appMetrics(w http.ResponseWriter, r *http.Request) {
	app := r.PathValue("app")
	if _, err := s.store.GetApp(r.Context(), app); err != nil {
		s.fail(w, r, err)
		return
	}
	since := time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute || d > metricstore.CoarsePoints*metricstore.CoarseStep {
			writeError(w, types.ErrInvalid.WithMessage("since %q: want a duration from 1m to 24h, e.g. 1h", v))
			return
		}
		since = d
	}
	step := metricstore.FineStep
	if since > metricstore.FinePoints*metricstore.FineStep {
		step = metricstore.CoarseStep
	}
	now := time.Now()
	out := types.AppMetrics{App: app, Since: since.String(), Step: step.String(), Series: []types.MetricSeries{}}
	for _, k := range s.history.Keys(app) {
		pts := s.history.Query(k, since, now)
		series := types.MetricSeries{Name: k.Name, Type: k.Type, Points: make([]types.MetricPoint, len(pts))}
		for i, p := range pts {
			series.Points[i] = types.MetricPoint{Time: p.Time, Value: p.Value}
		}
		out.Series = append(out.Series, series)
	}
	out.Summary = summarize(out.Series, step)
	writeJSON(w, http.StatusOK, out)
}

// summarize adds an app's series up over their span: each rate point
// stands for one step of requests, and the latency percentiles are
// averaged over the points weighted by the requests of the same step.
func summarize(series []types.MetricSeries, step time.Duration) types.MetricSummary {
	sum := types.MetricSummary{StatusClasses: map[string]float64{}}
	byName := map[string][]types.MetricPoint{}
	for _, sr := range series {
		if sr.Type == "" {
			byName[sr.Name] = sr.Points
		}
	}
	requestsAt := map[int64]float64{}
	for _, p := range byName[types.MetricRequests] {
		n := p.Value * step.Seconds()
		sum.Requests += n
		requestsAt[p.Time.Unix()] = n
	}
	for _, class := range []string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"} {
		pts, ok := byName[types.MetricStatus(class)]
		if !ok {
			continue
		}
		for _, p := range pts {
			sum.StatusClasses[class] += p.Value * step.Seconds()
		}
	}
	weighted := func(name string) float64 {
		var total, weight float64
		for _, p := range byName[name] {
			w := requestsAt[p.Time.Unix()]
			total += p.Value * w
			weight += w
		}
		if weight == 0 {
			return 0
		}
		return total / weight
	}
	sum.LatencyP50, sum.LatencyP95, sum.LatencyP99 = weighted(types.MetricP50), weighted(types.MetricP95), weighted(types.MetricP99)
	return sum
}
