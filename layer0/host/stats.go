package host

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantryhq/gantry/layer0/cgroups"
	"github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/hostusage"
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
		r = nil
	}
	a.log.Info("reading jobs' resource use", "cgroup_version", r.Version(), "interval", a.cfg.StatsInterval)
	disks := a.diskPaths(ctx)
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	for {
		a.sampleHost(disks)
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
// returns how many it read; none without cgroups.
func (a *agent) sampleJobs(r *cgroups.Reader) int {
	if r == nil {
		return 0
	}
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

// hostSample is the host's last reading and the CPU times it was computed
// from.
type hostSample struct {
	usage client.Usage
	cpu   hostusage.CPUTimes
	// warned holds the disks above DiskWarnFraction at the last reading.
	warned map[string]bool
}

// diskPaths returns the directories whose file systems the agent
// watches: its state dir and Docker's root (when this process can see it).
func (a *agent) diskPaths(ctx context.Context) []string {
	paths := []string{a.cfg.StateDir}
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	if info, err := a.docker.Info(ctx); err == nil && info.DockerRootDir != "" {
		if _, err := hostusage.ReadDisk(info.DockerRootDir); err == nil {
			paths = append(paths, info.DockerRootDir)
		}
	}
	return paths
}

// sampleHost reads the host's CPU, memory and disks, and warns in the log
// when a disk passes DiskWarnFraction.
func (a *agent) sampleHost(paths []string) {
	now := time.Now().UTC()
	u := client.Usage{At: now, Cores: runtime.NumCPU()}
	cpu, err := hostusage.ReadCPU("")
	if err != nil {
		a.log.Debug("cannot read the host's CPU", "err", err)
	}
	if m, err := hostusage.ReadMemory(""); err == nil {
		u.MemoryUsed, u.MemoryTotal = m.Used(), m.Total
	}
	a.hostUsageMu.Lock()
	defer a.hostUsageMu.Unlock()
	prev := a.hostUsage
	if prev != nil && err == nil {
		u.CPU = cpu.Cores(prev.cpu, u.Cores)
	}
	warned := map[string]bool{}
	for _, p := range paths {
		d, err := hostusage.ReadDisk(p)
		if err != nil {
			continue
		}
		u.Disks = append(u.Disks, client.Disk{Path: p, Used: d.Used(), Total: d.Total})
		if d.Fraction() >= client.DiskWarnFraction {
			warned[p] = true
			if prev == nil || !prev.warned[p] {
				a.log.Warn("disk almost full: free space with `gantry gc`, or grow the disk",
					"path", p, "used_percent", int(d.Fraction()*100), "free_bytes", d.Free)
			}
		}
	}
	a.hostUsage = &hostSample{usage: u, cpu: cpu, warned: warned}
}

// usage returns the host's last reading; the zero Usage before the
// first.
func (a *agent) usage() client.Usage {
	a.hostUsageMu.Lock()
	defer a.hostUsageMu.Unlock()
	if a.hostUsage == nil {
		return client.Usage{Cores: runtime.NumCPU()}
	}
	return a.hostUsage.usage
}

// hostCollector exports the host's last reading.
type hostCollector struct {
	a                                          *agent
	cpu, cores, memUsed, memTotal, used, total *prometheus.Desc
}

var _ prometheus.Collector = (*hostCollector)(nil)

func newHostCollector(a *agent) *hostCollector {
	host := prometheus.Labels{"host": a.cfg.ID}
	return &hostCollector{
		a:        a,
		cpu:      prometheus.NewDesc("gantry_host_cpu_used_cores", "Cores busy on average over the agent's last interval.", nil, host),
		cores:    prometheus.NewDesc("gantry_host_cpu_cores", "Cores of the host.", nil, host),
		memUsed:  prometheus.NewDesc("gantry_host_memory_used_bytes", "Memory not available to new processes.", nil, host),
		memTotal: prometheus.NewDesc("gantry_host_memory_total_bytes", "Memory of the host.", nil, host),
		used:     prometheus.NewDesc("gantry_host_disk_used_bytes", "Bytes used on the file system of path.", []string{"path"}, host),
		total:    prometheus.NewDesc("gantry_host_disk_total_bytes", "Size of the file system of path.", []string{"path"}, host),
	}
}

func (c *hostCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.cores, c.memUsed, c.memTotal, c.used, c.total} {
		ch <- d
	}
}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	u := c.a.usage()
	ch <- prometheus.MustNewConstMetric(c.cpu, prometheus.GaugeValue, u.CPU)
	ch <- prometheus.MustNewConstMetric(c.cores, prometheus.GaugeValue, float64(u.Cores))
	ch <- prometheus.MustNewConstMetric(c.memUsed, prometheus.GaugeValue, float64(u.MemoryUsed))
	ch <- prometheus.MustNewConstMetric(c.memTotal, prometheus.GaugeValue, float64(u.MemoryTotal))
	for _, d := range u.Disks {
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(d.Used), d.Path)
		ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(d.Total), d.Path)
	}
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
