package host

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/layer0/cgroups"
	"github.com/gantryhq/gantry/layer0/host/client"
)

// jobStats is a job's last reading and the one before, from which the
// rates come.
type jobStats struct {
	at    time.Time
	usage cgroups.Usage
	cpu   float64 // cores, over the interval ending at at
}

// view is the API's form of s.
func (s *jobStats) view() *client.Stats {
	u := s.usage
	return &client.Stats{
		At: s.at, CPU: s.cpu, CPUSeconds: float64(u.CPUNanos) / 1e9,
		MemoryRSS: u.MemoryRSS, MemoryCache: u.MemoryCache, MemoryLimit: u.MemoryLimit,
		NetRxBytes: u.NetRxBytes, NetTxBytes: u.NetTxBytes, DiskReadBytes: u.DiskReadBytes, DiskWriteBytes: u.DiskWriteBytes,
		Pids: u.Pids, OOMKills: u.OOMKills,
	}
}

// statsOf returns the job's last reading; nil when there is none.
func (j *job) statsOf() *client.Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.stats == nil {
		return nil
	}
	return j.stats.view()
}

// statsLoop reads every running job's cgroups every StatsInterval until
// ctx ends. Without cgroups (another OS, an unusual mount) it logs why
// once and reads nothing.
func (a *agent) statsLoop(ctx context.Context) {
	r, err := cgroups.NewReader("")
	if err != nil {
		a.log.Warn("no per-job resource figures", "err", err)
		return
	}
	a.log.Info("reading jobs' resource use", "cgroup_version", r.Version(), "interval", a.cfg.StatsInterval)
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	for {
		start := time.Now()
		n := a.sampleJobs(r)
		a.sampleDuration.Observe(time.Since(start).Seconds())
		a.log.Debug("read jobs' resource use", "jobs", n, "took", time.Since(start))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sampleJobs takes one reading of every job with a running process and
// returns how many it read.
func (a *agent) sampleJobs(r *cgroups.Reader) int {
	n := 0
	for _, j := range a.jobList() {
		j.mu.Lock()
		pid := j.pid
		j.mu.Unlock()
		if pid == 0 {
			continue
		}
		u, err := r.Read(pid)
		now := time.Now()
		j.mu.Lock()
		if j.pid != pid { // the job moved on meanwhile
			j.mu.Unlock()
			continue
		}
		switch {
		case errors.Is(err, cgroups.ErrNoProcess):
			j.pid, j.stats = 0, nil
		case err != nil:
			j.log.Debug("cannot read the job's cgroups", "err", err)
		default:
			next := &jobStats{at: now, usage: u}
			if prev := j.stats; prev != nil && now.After(prev.at) && u.CPUNanos >= prev.usage.CPUNanos {
				next.cpu = float64(u.CPUNanos-prev.usage.CPUNanos) / float64(now.Sub(prev.at).Nanoseconds())
			}
			j.stats = next
			n++
		}
		j.mu.Unlock()
	}
	return n
}

// jobCollector exports the jobs' last readings as Prometheus metrics at
// scrape time, so that a job's series end when the job does.
type jobCollector struct {
	a                                            *agent
	cpu, rss, cache, limit, rx, tx, rd, wr, pids *prometheus.Desc
	oom, restarts                                *prometheus.Desc
}

var _ prometheus.Collector = (*jobCollector)(nil)

func newJobCollector(a *agent) *jobCollector {
	labels := []string{"app", "type", "job", "release"}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("gantry_job_"+name, help, labels, prometheus.Labels{"host": a.cfg.ID})
	}
	return &jobCollector{
		a:        a,
		cpu:      d("cpu_seconds_total", "CPU time the job's container used."),
		rss:      d("memory_rss_bytes", "Anonymous memory of the job's container."),
		cache:    d("memory_cache_bytes", "Page cache charged to the job's container."),
		limit:    d("memory_limit_bytes", "Memory limit of the job's container (absent when none)."),
		rx:       d("network_receive_bytes_total", "Bytes the job's network namespace received (loopback excluded)."),
		tx:       d("network_transmit_bytes_total", "Bytes the job's network namespace sent (loopback excluded)."),
		rd:       d("disk_read_bytes_total", "Block device bytes the job's container read."),
		wr:       d("disk_write_bytes_total", "Block device bytes the job's container wrote."),
		pids:     d("pids", "Processes and threads in the job's container."),
		oom:      d("oom_kills_total", "Processes of the job's container the OOM killer ended."),
		restarts: d("restarts", "Times the job was restarted after a crash."),
	}
}

func (c *jobCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.rss, c.cache, c.limit, c.rx, c.tx, c.rd, c.wr, c.pids, c.oom, c.restarts} {
		ch <- d
	}
}

func (c *jobCollector) Collect(ch chan<- prometheus.Metric) {
	for _, j := range c.a.jobList() {
		s := j.spec()
		labels := []string{s.App, s.Type, j.id, strconv.Itoa(s.ReleaseVersion)}
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.GaugeValue, float64(j.asg.Restarts), labels...)
		st := j.statsOf()
		if st == nil {
			continue
		}
		for _, m := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v float64
		}{
			{c.cpu, prometheus.CounterValue, st.CPUSeconds},
			{c.rss, prometheus.GaugeValue, float64(st.MemoryRSS)},
			{c.cache, prometheus.GaugeValue, float64(st.MemoryCache)},
			{c.rx, prometheus.CounterValue, float64(st.NetRxBytes)},
			{c.tx, prometheus.CounterValue, float64(st.NetTxBytes)},
			{c.rd, prometheus.CounterValue, float64(st.DiskReadBytes)},
			{c.wr, prometheus.CounterValue, float64(st.DiskWriteBytes)},
			{c.pids, prometheus.GaugeValue, float64(st.Pids)},
			{c.oom, prometheus.CounterValue, float64(st.OOMKills)},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v, labels...)
		}
		if st.MemoryLimit > 0 {
			ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(st.MemoryLimit), labels...)
		}
	}
}
