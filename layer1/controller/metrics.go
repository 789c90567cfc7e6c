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

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/appmetrics"
	"github.com/gantryhq/gantry/layer1/controller/types"
	"github.com/gantryhq/gantry/layer1/metricstore"
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
// host), and says per host whether its agent answered
// (gantry_host_scrape_up).
func (s *Server) clusterMetrics(w http.ResponseWriter, r *http.Request) {
	families := map[string]*dto.MetricFamily{}
	own, err := s.metrics.Gather()
	if err != nil {
		s.log.Warn("gather the controller's metrics", "err", err)
	}
	for _, f := range own {
		families[f.GetName()] = f
	}
	hosts, err := s.listHosts(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	up := &dto.MetricFamily{
		Name: proto.String("gantry_host_scrape_up"),
		Help: proto.String("Whether the host's agent answered this scrape (1) or not (0)."),
		Type: dto.MetricType_GAUGE.Enum(),
	}
	ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			fams, err := s.hosts.get(h.APIURL).Metrics(ctx)
			mu.Lock()
			defer mu.Unlock()
			value := 1.0
			if err != nil {
				s.log.Warn("scrape a host agent", "host", h.ID, "err", err)
				value = 0
			}
			up.Metric = append(up.Metric, &dto.Metric{
				Label: []*dto.LabelPair{{Name: proto.String("host"), Value: proto.String(h.ID)}},
				Gauge: &dto.Gauge{Value: proto.Float64(value)},
			})
			for _, f := range fams {
				mergeFamily(families, f, "host", h.ID)
			}
		})
	}
	wg.Wait()
	families[up.GetName()] = up

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
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := s.cfg.Etcd.Get(ctx, s.space.Hosts(), clientv3.WithPrefix())
	if err != nil {
		return nil, etcdErr("list hosts", err)
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
// Config.MetricsFile across restarts.
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
	writeJSON(w, http.StatusOK, out)
}
