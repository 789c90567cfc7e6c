// Package appmetrics turns what the routers and host agents count into each
// app's key series, every 10 s, in a metricstore.Store: the request rate,
// the 5xx rate and latency percentiles from the routers' counters and
// histograms, and CPU and memory per process type from the agents' cgroup
// readings.
//
// Routers register their metrics endpoint in discovery as the service
// router/types.Service; host agents have their API in their host record. Both
// answer with the platform's token. Counters are cumulative: the collector
// keeps each source's previous reading and stores the difference, and a
// counter that went down (a restarted router) counts from zero.
//
// The collector also reads each agent's disks (GET /v1/usage): when one
// passes the warning threshold (85% by default) it logs a warning and
// sends one as an event of the system app gantry-controller, once per
// crossing, and a line again when the disk falls back under (with a
// margin of DiskHysteresisPercent).
package appmetrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/discovery"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
	"github.com/gantryhq/gantry/layer1/metricstore"
	routertypes "github.com/gantryhq/gantry/router/types"
)

// DefaultInterval is Config.Interval when it is zero.
const DefaultInterval = 10 * time.Second

// requestTimeout bounds one scrape of a router or an agent.
const requestTimeout = 5 * time.Second

// Config configures Run.
type Config struct {
	// Etcd is the cluster's etcd client; required.
	Etcd *clientv3.Client
	// Space is the cluster's key space; required.
	Space keyspace.Space
	// Token is the platform's token, which routers and agents require;
	// required.
	Token string
	// Store receives the series; required.
	Store *metricstore.Store
	// Interval is the time between readings; zero means 10 s.
	Interval time.Duration
	// DiskWarningPercent is the part of a host's disk in use, in percent
	// (1 to 100), at or above which the collector warns; zero means
	// DefaultDiskWarningPercent (85).
	DiskWarningPercent int
	// Events receives the disk warnings as events of the system app
	// types.SystemAppController (gantry-controller); nil sends them to
	// Logger only.
	Events EventSink
	// Logger receives the collector's logs; nil discards them.
	Logger *slog.Logger
}

// EventSink receives the platform's events for an app's log (the
// controller's EventSink, a log Shipper). Event must not block.
type EventSink interface {
	Event(app, msg string)
}

// Validate reports missing fields.
func (c Config) Validate() error {
	var errs []error
	if c.Etcd == nil {
		errs = append(errs, errors.New("no etcd client"))
	}
	if c.Space.Cluster() == "" {
		errs = append(errs, errors.New("no key space"))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("no platform token"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("no store"))
	}
	if c.Interval < 0 {
		errs = append(errs, errors.New("negative interval"))
	}
	if c.DiskWarningPercent < 0 || c.DiskWarningPercent > 100 {
		errs = append(errs, fmt.Errorf("disk warning %d%%: want 1 to 100, or 0 for %d", c.DiskWarningPercent, DefaultDiskWarningPercent))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("app metrics: %w", err)
	}
	return nil
}

// Collector reads the routers and agents. Tick takes one reading; Run
// ticks every Interval.
type Collector struct {
	cfg   Config
	log   *slog.Logger
	disc  *discovery.Client
	http  *http.Client
	hosts map[string]*hostclient.Client

	// prev is each router's last reading, by router instance ID.
	prev map[string]routerReading
	// disks knows which hosts' disks are over the warning threshold.
	disks *diskWatch
}

// routerReading is what one router had counted, per app.
type routerReading struct {
	at   time.Time
	apps map[string]*appCounts
}

// appCounts are one app's cumulative counts at one router.
type appCounts struct {
	requests, errors float64
	// classes are the requests by status class.
	classes map[string]float64
	// buckets are the histogram's cumulative counts by upper bound.
	buckets []bucket
}

type bucket struct {
	upper float64
	count float64
}

// New returns a Collector for cfg.
func New(cfg Config) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.DiskWarningPercent == 0 {
		cfg.DiskWarningPercent = DefaultDiskWarningPercent
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{
		cfg: cfg, log: log,
		disc:  discovery.New(cfg.Etcd, cfg.Space, requestTimeout, log),
		http:  &http.Client{Timeout: requestTimeout},
		hosts: map[string]*hostclient.Client{},
		prev:  map[string]routerReading{},
		disks: newDiskWatch(cfg.DiskWarningPercent),
	}, nil
}

// Run takes a reading every Interval until ctx ends.
func (c *Collector) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.Tick(ctx, now)
		}
	}
}

// Tick takes one reading of every router and agent and adds the app
// series at now.
func (c *Collector) Tick(ctx context.Context, now time.Time) {
	var wg sync.WaitGroup
	wg.Go(func() { c.readRouters(ctx, now) })
	wg.Go(func() { c.readHosts(ctx, now) })
	wg.Wait()
}

func (c *Collector) add(app, typ, name string, now time.Time, v float64) {
	if err := c.cfg.Store.Add(metricstore.Key{App: app, Type: typ, Name: name}, now, v); err != nil {
		c.log.Warn("app series not kept", "app", app, "series", name, "err", err)
	}
}

// readRouters reads every registered router and adds each app's request
// rate, error rate and latency percentiles over the interval since the
// previous reading.
func (c *Collector) readRouters(ctx context.Context, now time.Time) {
	routers, _, err := c.disc.List(ctx, routertypes.Service)
	if err != nil {
		c.log.Warn("list the routers", "err", err)
		return
	}
	type delta struct {
		seconds          float64
		requests, errors float64
		classes          map[string]float64
		buckets          []bucket
	}
	deltas := map[string]*delta{}
	seen := map[string]bool{}
	for _, r := range routers {
		seen[r.ID] = true
		apps, err := c.scrapeRouter(ctx, r.Addr)
		if err != nil {
			c.log.Warn("read a router's metrics", "router", r.ID, "addr", r.Addr, "err", err)
			continue
		}
		prev, had := c.prev[r.ID]
		c.prev[r.ID] = routerReading{at: now, apps: apps}
		if !had {
			continue // a rate needs two readings
		}
		secs := now.Sub(prev.at).Seconds()
		if secs <= 0 {
			continue
		}
		for app, cur := range apps {
			old := prev.apps[app]
			d := deltas[app]
			if d == nil {
				d = &delta{seconds: secs, classes: map[string]float64{}}
				deltas[app] = d
			}
			for class, v := range cur.classes {
				d.classes[class] += increase(v, old, func(a *appCounts) float64 { return a.classes[class] })
			}
			d.requests += increase(cur.requests, old, func(a *appCounts) float64 { return a.requests })
			d.errors += increase(cur.errors, old, func(a *appCounts) float64 { return a.errors })
			d.buckets = addBuckets(d.buckets, bucketIncrease(cur.buckets, old))
		}
	}
	for id := range c.prev {
		if !seen[id] {
			delete(c.prev, id)
		}
	}
	for app, d := range deltas {
		c.add(app, "", types.MetricRequests, now, d.requests/d.seconds)
		c.add(app, "", types.MetricErrors, now, d.errors/d.seconds)
		for class, v := range d.classes {
			c.add(app, "", types.MetricStatus(class), now, v/d.seconds)
		}
		if total := totalOf(d.buckets); total > 0 {
			c.add(app, "", types.MetricP50, now, quantile(0.50, d.buckets))
			c.add(app, "", types.MetricP95, now, quantile(0.95, d.buckets))
			c.add(app, "", types.MetricP99, now, quantile(0.99, d.buckets))
		}
	}
}

// increase is cur minus the previous value, or cur when the counter went
// down (the router restarted) or the app is new.
func increase(cur float64, old *appCounts, of func(*appCounts) float64) float64 {
	if old == nil || of(old) > cur {
		return cur
	}
	return cur - of(old)
}

func bucketIncrease(cur []bucket, old *appCounts) []bucket {
	out := slices.Clone(cur)
	if old == nil || len(old.buckets) != len(cur) {
		return out
	}
	for i := range out {
		if old.buckets[i].upper != out[i].upper || old.buckets[i].count > out[i].count {
			return slices.Clone(cur)
		}
		out[i].count -= old.buckets[i].count
	}
	return out
}

// addBuckets sums two histograms of the same bounds (b may be empty).
func addBuckets(a, b []bucket) []bucket {
	if len(a) == 0 {
		return b
	}
	if len(b) != len(a) {
		return a
	}
	for i := range a {
		a[i].count += b[i].count
	}
	return a
}

func totalOf(b []bucket) float64 {
	if len(b) == 0 {
		return 0
	}
	return b[len(b)-1].count
}

// quantile estimates the q-quantile of a histogram of cumulative bucket
// counts, interpolating linearly within the bucket, as Prometheus'
// histogram_quantile does. The last bucket (+Inf) answers with the highest
// finite bound.
func quantile(q float64, b []bucket) float64 {
	total := totalOf(b)
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, bk := range b {
		if bk.count >= rank {
			if math.IsInf(bk.upper, 1) {
				return lower
			}
			inBucket := bk.count - below
			if inBucket <= 0 {
				return bk.upper
			}
			return lower + (bk.upper-lower)*(rank-below)/inBucket
		}
		lower, below = bk.upper, bk.count
	}
	return lower
}

// scrapeRouter reads one router's /metrics into counts per app.
func (c *Collector) scrapeRouter(ctx context.Context, addr string) (map[string]*appCounts, error) {
	fams, err := ScrapeRouter(ctx, c.http, addr, c.cfg.Token)
	if err != nil {
		return nil, err
	}
	return countsOf(fams), nil
}

// ScrapeRouter reads the /metrics of the router whose metrics listener is
// at addr (as registered in discovery), with the platform's token, and
// parses it from the Prometheus text format. The read is bounded by 5 s.
func ScrapeRouter(ctx context.Context, client *http.Client, addr, token string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("router %s: GET /metrics: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("router %s: parse /metrics: %w", addr, err)
	}
	return fams, nil
}

// countsOf picks the request counters and latency histograms out of a
// router's metric families.
func countsOf(fams map[string]*dto.MetricFamily) map[string]*appCounts {
	apps := map[string]*appCounts{}
	get := func(app string) *appCounts {
		a := apps[app]
		if a == nil {
			a = &appCounts{}
			apps[app] = a
		}
		return a
	}
	for _, m := range fams[routertypes.RequestsMetric].GetMetric() {
		app, class := label(m, "app"), label(m, "status_class")
		if app == "" {
			continue
		}
		a := get(app)
		v := m.GetCounter().GetValue()
		a.requests += v
		if a.classes == nil {
			a.classes = map[string]float64{}
		}
		a.classes[class] += v
		if class == "5xx" {
			a.errors += v
		}
	}
	for _, m := range fams[routertypes.LatencyMetric].GetMetric() {
		app := label(m, "app")
		h := m.GetHistogram()
		if app == "" || h == nil {
			continue
		}
		a := get(app)
		for _, b := range h.GetBucket() {
			a.buckets = append(a.buckets, bucket{upper: b.GetUpperBound(), count: float64(b.GetCumulativeCount())})
		}
		a.buckets = append(a.buckets, bucket{upper: math.Inf(1), count: float64(h.GetSampleCount())})
	}
	return apps
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// readHosts reads every host agent's jobs and disks, adds each app's CPU
// and resident memory per process type, and warns of the disks that
// crossed the warning threshold.
func (c *Collector) readHosts(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	resp, err := c.cfg.Etcd.Get(ctx, c.cfg.Space.Hosts(), clientv3.WithPrefix())
	if err != nil {
		c.log.Warn("list the hosts", "err", err)
		return
	}
	type key struct{ app, typ string }
	cpu, mem := map[key]float64{}, map[key]float64{}
	registered, disks := map[string]bool{}, map[string][]hostclient.Disk{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, kv := range resp.Kvs {
		var h keyspace.Host
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			continue
		}
		registered[h.ID] = true
		if h.APIURL == "" {
			continue
		}
		cl := c.host(h.APIURL)
		wg.Go(func() {
			u, err := cl.Usage(ctx)
			if err != nil {
				c.log.Warn("read a host's usage", "host", h.ID, "err", err)
				return
			}
			if u.At.IsZero() {
				return // the agent has not read its disks yet
			}
			mu.Lock()
			defer mu.Unlock()
			disks[h.ID] = u.Disks
		})
		wg.Go(func() {
			jobs, err := cl.ListJobs(ctx)
			if err != nil {
				c.log.Warn("read a host's jobs", "host", h.ID, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, j := range jobs {
				if j.Stats == nil || j.App == "" {
					continue
				}
				k := key{j.App, j.Type}
				cpu[k] += j.Stats.CPU
				mem[k] += float64(j.Stats.MemoryRSS)
			}
		})
	}
	wg.Wait()
	for k, v := range cpu {
		c.add(k.app, k.typ, types.MetricCPU, now, v)
		c.add(k.app, k.typ, types.MetricMemory, now, mem[k])
	}
	for _, ch := range c.disks.observe(disks, registered) {
		c.report(ch)
	}
}

// report logs a disk's crossing of the warning threshold and sends it to
// the log of gantry-controller.
func (c *Collector) report(ch diskChange) {
	msg := ch.message(c.cfg.DiskWarningPercent)
	attrs := []any{"host", ch.host, "path", ch.disk.Path, "used_bytes", ch.disk.Used, "total_bytes", ch.disk.Total,
		"used_percent", percentOf(ch.disk), "warning_percent", c.cfg.DiskWarningPercent}
	if ch.over {
		c.log.Warn(msg, attrs...)
	} else {
		c.log.Info(msg, attrs...)
	}
	if c.cfg.Events != nil {
		c.cfg.Events.Event(types.SystemAppController, msg)
	}
}

func (c *Collector) host(apiURL string) *hostclient.Client {
	cl, ok := c.hosts[apiURL]
	if !ok {
		cl = hostclient.New(apiURL, c.cfg.Token)
		c.hosts[apiURL] = cl
	}
	return cl
}
