package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/discovery"
	"github.com/gantryhq/gantry/layer0/etcdwatch"
	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Timings of the agent's loops and calls.
const (
	etcdTimeout     = 5 * time.Second  // one etcd request
	dockerTimeout   = 30 * time.Second // one Docker request
	pingTimeout     = 5 * time.Second  // one Docker reachability check
	resyncInterval  = 5 * time.Second  // full converge and container re-inspection
	pingInterval    = 5 * time.Second  // between Docker checks while healthy
	maxPingBackoff  = 15 * time.Second // longest pause between Docker checks while unhealthy
	maxRetryBackoff = 10 * time.Second // longest pause between retries of a job step
	shutdownGrace   = 5 * time.Second  // HTTP API shutdown
)

// agent is one running host agent.
type agent struct {
	cfg     Config
	space   keyspace.Space
	log     *slog.Logger
	etcd    *clientv3.Client
	docker  *client.Client
	disc    *discovery.Client
	lease   *lease
	apiURL  string
	started time.Time

	artifacts *artifactCache
	images    *imageFetcher
	transfers *http.Client // artifact downloads and output uploads
	gantryd   string       // the executable MountGantryd mounts

	mu          sync.Mutex
	jobs        map[string]*job                // every job with a goroutine, by job ID
	assignments map[string]keyspace.Assignment // nil until the first snapshot
	previous    map[string]keyspace.JobState   // job states of the previous run, by job ID; nil once adopted
	adopted     chan struct{}                  // closed after the first converge has adopted containers

	hostMu    sync.Mutex // serialises host record writes and guards the fields below
	healthy   bool
	reason    string
	cpu, mem  int64
	hostDirty bool

	hostUsageMu sync.Mutex
	hostUsage   *hostSample // nil before the first reading

	metrics        *prometheus.Registry // served at /metrics
	sampleDuration prometheus.Histogram // one reading of every job's cgroups

	wake      chan struct{} // converge now
	republish chan struct{} // the lease was renewed: publish every key again
	wg        sync.WaitGroup
}

// Run runs the host agent until ctx is done: it registers the host, converges
// Docker to the host's assignments, health-checks jobs, publishes their
// state and discovery entries, and serves the HTTP API. It returns an error
// only for an invalid config or an API address it cannot listen on; etcd and
// Docker outages are retried. On return the host's lease is left to expire
// and every app container keeps running: the next start adopts them.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, finishedDir), 0o700); err != nil {
		return fmt.Errorf("host agent: state dir: %w", err)
	}
	gantryd, err := resolveGantryd(cfg.GantrydPath)
	if err != nil {
		return fmt.Errorf("host agent: %w", err)
	}
	transfers := &http.Client{
		// The platform token goes only where a spec says: no redirects.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	cache, err := newArtifactCache(filepath.Join(cfg.StateDir, artifactsDir), cfg.ArtifactCacheSize,
		cfg.APIToken, transfers, cfg.Logger.With("host", cfg.ID))
	if err != nil {
		return fmt.Errorf("host agent: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("host agent: listen on %s: %w", cfg.APIAddr, err)
	}
	a := &agent{
		cfg:       cfg,
		space:     keyspace.MustNew(cfg.Cluster),
		log:       cfg.Logger.With("host", cfg.ID),
		etcd:      cfg.Etcd,
		docker:    cfg.Docker,
		apiURL:    apiURL(cfg.APIAddr, ln.Addr(), cfg.AdvertiseAddr),
		started:   time.Now().UTC(),
		jobs:      make(map[string]*job),
		cpu:       cfg.CPU,
		mem:       cfg.Memory,
		reason:    "starting",
		hostDirty: true,
		wake:      make(chan struct{}, 1),
		adopted:   make(chan struct{}),
		republish: make(chan struct{}, 1),
		artifacts: cache,
		transfers: transfers,
		gantryd:   gantryd,
	}
	a.images = &imageFetcher{
		self:    cfg.ID,
		space:   a.space,
		etcd:    a.etcd,
		docker:  a.docker,
		token:   cfg.APIToken,
		log:     a.log,
		spawn:   a.goFn,
		clients: make(map[string]*hostclient.Client),
	}
	a.initMetrics()
	a.disc = discovery.New(a.etcd, a.space, etcdTimeout, a.log)
	a.lease = &lease{etcd: a.etcd, ttl: cfg.LeaseTTL, path: filepath.Join(cfg.StateDir, leaseFile), timeout: etcdTimeout, log: a.log}
	a.log.Info("host agent starting", "cluster", cfg.Cluster, "advertise", cfg.AdvertiseAddr, "api", a.apiURL,
		"state_dir", cfg.StateDir, "cpu", cfg.CPU, "memory", cfg.Memory, "tags", cfg.Tags, "lease_ttl", cfg.LeaseTTL,
		"drain_delay", cfg.DrainDelay, "log_lines", cfg.LogLines, "artifact_cache_size", cfg.ArtifactCacheSize,
		"gantryd", gantryd, "version", cfg.Version, "docker", cfg.Docker.DaemonHost())

	srv := a.apiServer(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("host API stopped", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-served
		a.wg.Wait()
		a.log.Info("host agent stopped; containers left running")
	}()

	if err := a.register(ctx); err != nil {
		return nil // ctx ended while etcd was unreachable
	}
	a.goFn(func() { a.republishLoop(ctx) })
	a.goFn(func() { a.monitorDocker(ctx) })
	a.goFn(func() { a.watchEvents(ctx) })
	a.goFn(func() { a.convergeLoop(ctx) })
	a.goFn(func() { a.statsLoop(ctx) })
	<-ctx.Done()
	return nil
}

// initMetrics makes the registry that /metrics serves: the jobs' resource
// use, the agent's own cost of reading it, and the process's figures.
func (a *agent) initMetrics() {
	a.metrics = prometheus.NewRegistry()
	host := prometheus.Labels{"host": a.cfg.ID}
	a.sampleDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "gantry_host_stats_read_seconds", Help: "Time to read every running job's cgroups once.",
		ConstLabels: host, Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8),
	})
	a.metrics.MustRegister(
		newJobCollector(a),
		newHostCollector(a),
		a.sampleDuration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gantry_host_jobs", Help: "Jobs the agent runs.", ConstLabels: host},
			func() float64 { return float64(len(a.jobList())) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

func (a *agent) goFn(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

// apiURL is the base URL others reach the API at: the listen host, or the
// advertised address when listening on every interface, and the bound port.
func apiURL(listen string, bound net.Addr, advertise string) string {
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = advertise
	}
	port := "0"
	if tcp, ok := bound.(*net.TCPAddr); ok {
		port = strconv.Itoa(tcp.Port)
	}
	return "http://" + net.JoinHostPort(host, port)
}

// register acquires the lease and starts heartbeating it, loads the job
// states a previous run left under a reused lease, checks Docker once and
// publishes the host record.
func (a *agent) register(ctx context.Context) error {
	attached, reused, err := a.lease.acquire(ctx)
	if err != nil {
		return err
	}
	a.goFn(func() { a.lease.keepAlive(ctx, a.leaseRenewed) })
	previous := make(map[string]keyspace.JobState)
	if reused {
		if previous, err = a.previousJobs(ctx); err != nil {
			return err
		}
		a.goFn(func() { a.dropStaleKeys(ctx, attached) })
	}
	a.mu.Lock()
	a.previous = previous
	a.mu.Unlock()
	a.checkDocker(ctx)
	return nil
}

// previousJobs reads the job states attached to the (reused) lease,
// retrying until it succeeds or ctx ends.
func (a *agent) previousJobs(ctx context.Context) (map[string]keyspace.JobState, error) {
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		tctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		resp, err := a.etcd.Get(tctx, a.space.Jobs(), clientv3.WithPrefix())
		cancel()
		if err == nil {
			out := make(map[string]keyspace.JobState)
			for _, kv := range resp.Kvs {
				var st keyspace.JobState
				if clientv3.LeaseID(kv.Lease) != a.lease.ID() || json.Unmarshal(kv.Value, &st) != nil || st.HostID != a.cfg.ID {
					continue
				}
				out[st.JobID] = st
			}
			return out, nil
		}
		a.log.Warn("cannot read the previous run's job states; retrying", "err", err)
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// dropStaleKeys deletes keys a previous run attached to the reused lease
// that no job of this run owns (jobs that vanished while the agent was
// down). It waits for the first converge, which creates the adopted jobs.
func (a *agent) dropStaleKeys(ctx context.Context, attached []string) {
	select {
	case <-ctx.Done():
		return
	case <-a.adopted:
	}
	a.mu.Lock()
	owned := map[string]bool{a.space.Host(a.cfg.ID): true}
	for id, j := range a.jobs {
		owned[a.space.Job(id)] = true
		if j.spec().Service != "" {
			owned[a.space.Instance(j.spec().Service, id)] = true
		}
	}
	a.mu.Unlock()
	for _, key := range attached {
		if owned[key] {
			continue
		}
		tctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		_, err := a.etcd.Delete(tctx, key)
		cancel()
		if err != nil {
			a.log.Warn("cannot delete stale key of the previous run", "key", key, "err", err)
			continue
		}
		a.log.Info("deleted stale key of the previous run", "key", key)
	}
}

// leaseRenewed is called by the lease keeper after it granted a new lease.
func (a *agent) leaseRenewed(context.Context) {
	select {
	case a.republish <- struct{}{}:
	default:
	}
}

// republishLoop writes the host record, job states and discovery entries
// again under a new lease.
func (a *agent) republishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.republish:
		}
		a.hostMu.Lock()
		a.hostDirty = true
		a.hostMu.Unlock()
		a.publishHost(ctx)
		for _, j := range a.jobList() {
			if err := j.publish(ctx); err != nil {
				j.log.Warn("cannot publish job under the new lease; will retry", "err", err)
			}
		}
	}
}

// jobList returns the current jobs.
func (a *agent) jobList() []*job {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Collect(maps.Values(a.jobs))
}

// publishHost writes the host record under the lease if it changed or a
// previous write failed.
func (a *agent) publishHost(ctx context.Context) {
	a.hostMu.Lock()
	defer a.hostMu.Unlock()
	if !a.hostDirty {
		return
	}
	h := keyspace.Host{
		ID:        a.cfg.ID,
		Addr:      a.cfg.AdvertiseAddr,
		APIURL:    a.apiURL,
		LogURL:    a.cfg.LogURL,
		CPU:       a.cpu,
		Memory:    a.mem,
		Tags:      a.cfg.Tags,
		Healthy:   a.healthy,
		Reason:    a.reason,
		Version:   a.cfg.Version,
		StartedAt: a.started,
	}
	val, err := json.Marshal(h)
	if err != nil {
		a.log.Error("encode host record", "err", err)
		return
	}
	tctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	if _, err := a.etcd.Put(tctx, a.space.Host(a.cfg.ID), string(val), clientv3.WithLease(a.lease.ID())); err != nil {
		a.log.Warn("cannot publish host record; will retry", "err", err)
		return
	}
	a.hostDirty = false
}

// checkDocker pings Docker, learns the capacity when it is not configured,
// records the host's health and publishes the host record. It reports
// whether Docker answered.
func (a *agent) checkDocker(ctx context.Context) bool {
	err := a.pingDocker(ctx)
	a.hostMu.Lock()
	was := a.healthy
	healthy, reason := err == nil, ""
	if err != nil {
		reason = "docker unreachable: " + err.Error()
	}
	if healthy != a.healthy || reason != a.reason {
		a.healthy, a.reason, a.hostDirty = healthy, reason, true
	}
	a.hostMu.Unlock()
	switch {
	case healthy && !was:
		a.log.Info("Docker is reachable; host healthy", "cpu", a.cpu, "memory", a.mem)
		a.poke()
		for _, j := range a.jobList() {
			j.poke()
		}
	case !healthy && was:
		a.log.Warn("Docker is unreachable; host unhealthy", "err", err)
	}
	a.publishHost(ctx)
	return healthy
}

func (a *agent) pingDocker(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	// A versioned call, unlike Ping, also settles the API version
	// negotiation, which Events relies on (see watchEvents).
	if _, err := a.docker.ServerVersion(tctx); err != nil {
		return err
	}
	a.hostMu.Lock()
	known := a.cpu > 0 && a.mem > 0
	a.hostMu.Unlock()
	if known {
		return nil
	}
	info, err := a.docker.Info(tctx)
	if err != nil {
		return fmt.Errorf("docker info: %w", err)
	}
	a.hostMu.Lock()
	if a.cpu == 0 {
		a.cpu = int64(info.NCPU) * 1000
	}
	if a.mem == 0 {
		a.mem = info.MemTotal
	}
	a.hostDirty = true
	a.hostMu.Unlock()
	return nil
}

// monitorDocker pings Docker every pingInterval while it answers and with
// back-off while it does not, and retries unpublished host records.
func (a *agent) monitorDocker(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for {
		wait := pingInterval
		if !a.isHealthy() {
			wait = backoff
			backoff = min(2*backoff, maxPingBackoff)
		} else {
			backoff = 500 * time.Millisecond
		}
		if sleep(ctx, wait) != nil {
			return
		}
		a.checkDocker(ctx)
	}
}

func (a *agent) isHealthy() bool {
	a.hostMu.Lock()
	defer a.hostMu.Unlock()
	return a.healthy
}

// poke asks the converge loop for a pass.
func (a *agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// convergeLoop follows the host's assignments and converges Docker to them
// on every change, every resyncInterval and when poked.
func (a *agent) convergeLoop(ctx context.Context) {
	snaps, err := etcdwatch.Watch(ctx, etcdwatch.Config{
		Client:         a.etcd,
		Prefix:         a.space.HostAssignments(a.cfg.ID),
		RequestTimeout: etcdTimeout,
		Logger:         a.log,
	})
	if err != nil {
		a.log.Error("cannot watch assignments", "err", err)
		return
	}
	tick := time.NewTicker(resyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case snap, ok := <-snaps:
			if !ok {
				return
			}
			a.setAssignments(snap)
		case <-tick.C:
		case <-a.wake:
		}
		if err := a.converge(ctx); err != nil {
			if a.isHealthy() {
				a.log.Warn("converge failed; will retry", "err", err)
			}
		}
	}
}

func (a *agent) setAssignments(snap etcdwatch.Snapshot) {
	asg := make(map[string]keyspace.Assignment, len(snap.KVs))
	for key, val := range snap.KVs {
		var as keyspace.Assignment
		if err := json.Unmarshal(val, &as); err != nil {
			a.log.Warn("skipping unreadable assignment", "key", key, "err", err)
			continue
		}
		id := keyspace.Last(key)
		if as.JobID != id || !validLabelValue(id) {
			a.log.Warn("skipping assignment whose job ID does not match its key", "key", key, "job_id", as.JobID)
			continue
		}
		asg[id] = as
	}
	a.mu.Lock()
	a.assignments = asg
	a.mu.Unlock()
}

// converge starts a job for every assignment without one, adopting its
// container when it exists, and stops every job and container without an
// assignment.
func (a *agent) converge(ctx context.Context) error {
	a.mu.Lock()
	known := a.assignments != nil
	a.mu.Unlock()
	if !known {
		return nil // never stop anything before the assignments are known
	}
	containers, err := a.listContainers(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, as := range a.assignments {
		if _, ok := a.jobs[id]; ok {
			continue
		}
		var prev *keyspace.JobState
		if st, ok := a.previous[id]; ok {
			prev = &st
		}
		c, found := containers[id]
		if !found {
			c = container.Summary{}
		}
		j := newJob(a, as, c.ID, prev, false)
		// On the first pass, a container that exited while no agent ran
		// (a reboot) is started again at once: the scheduler, itself such
		// a job, could not come back otherwise. One whose exit the last
		// run saw as a crash waits for the scheduler's back-off.
		j.startExited = a.previous != nil && c.ID != "" && c.State == container.StateExited &&
			!as.Spec.OneOff && (prev == nil || prev.State != keyspace.StateCrashed)
		a.jobs[id] = j
		if c.ID != "" {
			j.log.Info("adopting container", "container", shortID(c.ID), "status", c.State)
		}
		a.goFn(func() { j.run(ctx) })
	}
	for id, j := range a.jobs {
		if _, ok := a.assignments[id]; !ok {
			j.requestStop()
		}
	}
	for id, c := range containers {
		if _, ok := a.jobs[id]; ok {
			continue
		}
		as := keyspace.Assignment{JobID: id, HostID: a.cfg.ID, Spec: specFromLabels(c.Labels)}
		j := newJob(a, as, c.ID, nil, true)
		j.log.Info("removing container without assignment", "container", shortID(c.ID), "status", c.State)
		a.jobs[id] = j
		j.requestStop()
		a.goFn(func() { j.run(ctx) })
	}
	if a.previous != nil {
		a.previous = nil // consumed by the first pass
		a.dropStaleFinished(a.assignments)
		close(a.adopted)
	}
	return nil
}

// listContainers returns this cluster's and host's containers by job ID.
func (a *agent) listContainers(ctx context.Context) (map[string]container.Summary, error) {
	tctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	list, err := a.docker.ContainerList(tctx, container.ListOptions{All: true, Filters: a.labelFilter()})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make(map[string]container.Summary, len(list))
	for _, c := range list {
		id := c.Labels[keyspace.LabelJob]
		if id == "" && c.Labels[keyspace.LabelSystem] != "" {
			continue // a platform container that gantryd up runs itself (etcd, the agent)
		}
		if !validLabelValue(id) {
			a.log.Warn("ignoring container without a usable job label", "container", shortID(c.ID))
			continue
		}
		out[id] = c
	}
	return out, nil
}

// labelFilter selects this cluster's and host's containers.
func (a *agent) labelFilter() filters.Args {
	return filters.NewArgs(
		filters.Arg("label", keyspace.LabelCluster+"="+a.cfg.Cluster),
		filters.Arg("label", LabelHost+"="+a.cfg.ID),
	)
}

// removeJob forgets a job whose container and keys are gone.
func (a *agent) removeJob(j *job) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.jobs[j.id] == j {
		delete(a.jobs, j.id)
	}
}

// job returns the job with the given ID.
func (a *agent) job(id string) (*job, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	j, ok := a.jobs[id]
	return j, ok
}

// watchEvents follows Docker's die and oom events of this host's containers
// so crashes are noticed at once; the periodic resync covers missed events.
func (a *agent) watchEvents(ctx context.Context) {
	f := a.labelFilter()
	f.Add("type", string(events.ContainerEventType))
	f.Add("event", string(events.ActionDie))
	f.Add("event", string(events.ActionOOM))
	backoff := 500 * time.Millisecond
	for {
		// The Docker client's Events reads the API version without
		// negotiating it first; subscribe only once a healthy check has
		// negotiated it.
		for !a.isHealthy() {
			if sleep(ctx, 200*time.Millisecond) != nil {
				return
			}
		}
		msgs, errs := a.docker.Events(ctx, events.ListOptions{Filters: f})
		// Whatever happened while not subscribed is caught up now.
		for _, j := range a.jobList() {
			j.poke()
		}
		err := a.readEvents(ctx, msgs, errs, func() { backoff = 500 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		a.log.Debug("Docker event stream ended; resubscribing", "err", err)
		if sleep(ctx, backoff) != nil {
			return
		}
		backoff = min(2*backoff, maxPingBackoff)
	}
}

func (a *agent) readEvents(ctx context.Context, msgs <-chan events.Message, errs <-chan error, got func()) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errs:
			return err
		case m := <-msgs:
			got()
			if j, ok := a.job(m.Actor.Attributes[keyspace.LabelJob]); ok {
				j.poke()
			}
		}
	}
}

// resolveGantryd returns the real path of the gantryd executable: p, or
// the running executable when p is empty.
func resolveGantryd(p string) (string, error) {
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find the gantryd executable: %w", err)
		}
		p = exe
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("gantryd executable: %w", err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("gantryd executable: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("gantryd executable %s is not a regular file", real)
	}
	return real, nil
}

func shortID(id string) string {
	return id[:min(len(id), 12)]
}
