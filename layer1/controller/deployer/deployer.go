// Package deployer moves the controller's deployments a step at a time:
// it reads each active deployment's steps from PostgreSQL and the job
// states from etcd, decides the next step (decide), stores it and has the
// app mirrored into etcd at once. See docs/ARCHITECTURE.md, "Deployments".
package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/etcdkv"
	"github.com/gantryhq/gantry/layer1/controller/mirror"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// Store holds the deployments and their steps.
type Store interface {
	ActiveDeployments(ctx context.Context) ([]store.Deployment, error)
	AdvanceDeployment(ctx context.Context, id string, step int, change store.DeploymentChange) (store.Advance, error)
}

var _ Store = (*store.Store)(nil)

// Mirror makes an app's etcd keys match PostgreSQL.
type Mirror interface {
	SyncApp(ctx context.Context, app string) error
}

var _ Mirror = (*mirror.Mirror)(nil)

// EventSink receives the events of an app (a deployment started or
// ended); Event must not block.
type EventSink interface {
	Event(app, msg string)
}

// Config is what a Deployer needs.
type Config struct {
	// Store holds the deployments. Required.
	Store Store
	// Etcd is the client of the cluster's etcd, where the job states are
	// read. Required.
	Etcd *clientv3.Client
	// Space is the cluster's key space.
	Space keyspace.Space
	// Mirror mirrors an app after each step. Required.
	Mirror Mirror
	// Timeout is the deploy timeout of the deployments that have none of
	// their own. Required (above 0).
	Timeout time.Duration
	// Events receives the apps' events; nil drops them.
	Events EventSink
	// LastLines returns the last lines of output of a job (from its state
	// or its host agent); nil reads only the state.
	LastLines func(context.Context, keyspace.JobState) []string
	// Logger receives the deployer's logs; nil discards them.
	Logger *slog.Logger
}

// New returns the deployer of cfg; Run runs it.
func New(cfg Config) *Deployer {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Deployer{
		store: cfg.Store, etcd: cfg.Etcd, space: cfg.Space, mirror: cfg.Mirror, timeout: cfg.Timeout,
		log: log, events: cfg.Events, lastLines: cfg.LastLines, wake: make(chan struct{}, 1),
	}
}

const (
	// deployPoll is how often the deployer looks at the jobs while a
	// deployment runs.
	deployPoll = time.Second
	// deployRetry is the pause after a failed look (PostgreSQL or etcd
	// unreachable).
	deployRetry = 5 * time.Second
	// idlePoll is how often the deployer looks for deployments while none
	// is active and nothing pokes it: a deployment made in PostgreSQL by
	// another writer than this controller (the platform's upgrade, see
	// store.EnsureSystemApp) starts within it.
	idlePoll = 2 * time.Second
	// maxReasonLines bounds the last lines of output a failed deployment
	// keeps.
	maxReasonLines = 20
)

// Deployer moves the active deployments (see store.AdvanceDeployment) a
// step at a time: at each look it reads a deployment's steps from
// PostgreSQL and the job states from etcd, decides the next step (decide),
// stores it if no other deployer stored one first, and mirrors the app
// into etcd at once. The formation counts in etcd derive from PostgreSQL
// only, and the deployer keeps no state of its own: a restarted
// controller resumes the deployments where PostgreSQL says they are.
//
// It polls every second while deployments are active, and otherwise every
// idlePoll or when poked.
type Deployer struct {
	store   Store
	etcd    *clientv3.Client
	space   keyspace.Space
	mirror  Mirror
	timeout time.Duration
	log     *slog.Logger
	events  EventSink
	// lastLines returns the last lines of output of a job (from its state
	// or its host agent); nil reads only the state.
	lastLines func(context.Context, keyspace.JobState) []string

	// wake holds a pending poke.
	wake chan struct{}
	// changed tells the followers of deployments that one changed.
	changed notifier
	// stopMu guards stop, closed when the server shuts down.
	stopMu sync.Mutex
	stop   chan struct{}
}

// Closing returns a channel closed when the server shuts down: the streams
// that follow deployments end then.
func (d *Deployer) Closing() <-chan struct{} {
	d.stopMu.Lock()
	defer d.stopMu.Unlock()
	if d.stop == nil {
		d.stop = make(chan struct{})
	}
	return d.stop
}

// Shutdown closes the channel of closing. It is idempotent.
func (d *Deployer) Shutdown() {
	d.stopMu.Lock()
	defer d.stopMu.Unlock()
	if d.stop == nil {
		d.stop = make(chan struct{})
	}
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
}

// Changed returns a channel closed at the next change of a deployment:
// the followers of deployments look again then.
func (d *Deployer) Changed() <-chan struct{} { return d.changed.wait() }

// emit records msg as an event of app.
func (d *Deployer) emit(app, msg string) {
	if d.events != nil {
		d.events.Event(app, msg)
	}
}

// notifier wakes every waiter at once.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// notify wakes the waiters.
func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// Poke makes the deployer look at the deployments soon, and tells the
// followers of deployments to look again.
func (d *Deployer) Poke() {
	d.changed.notify()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run moves deployments until ctx ends.
func (d *Deployer) Run(ctx context.Context) {
	timer := time.NewTimer(deployPoll)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
		active, err := d.step(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("check deployments", "err", err)
		}
		switch {
		case err != nil:
			timer.Reset(deployRetry)
		case active:
			timer.Reset(deployPoll)
		default:
			timer.Reset(idlePoll)
		}
	}
}

// step looks at every active deployment once and moves those that can
// move. It reports whether some are still active.
func (d *Deployer) step(ctx context.Context) (bool, error) {
	deps, err := d.store.ActiveDeployments(ctx)
	if err != nil || len(deps) == 0 {
		return false, err
	}
	states, err := d.jobStates(ctx)
	if err != nil {
		return true, err
	}
	active := false
	var errs []error
	for _, dep := range deps {
		still, err := d.check(ctx, dep, states)
		active = active || still
		if err != nil {
			errs = append(errs, fmt.Errorf("deployment of %s v%d: %w", dep.App, dep.New.Version, err))
		}
	}
	return active, errors.Join(errs...)
}

// check decides the next step of dep and applies it. It reports whether
// the app still has an active deployment.
func (d *Deployer) check(ctx context.Context, dep store.Deployment, states []keyspace.JobState) (bool, error) {
	change, culprit, changed := decide(dep, viewJobs(dep, states), time.Now(), d.TimeoutOf(dep))
	if !changed {
		return true, nil
	}
	if culprit != nil {
		change.FailedJob = culprit.JobID
		change.LastLines = culprit.LastLines
		if len(change.LastLines) == 0 && d.lastLines != nil {
			change.LastLines = d.lastLines(ctx, *culprit)
		}
		if n := len(change.LastLines); n > maxReasonLines {
			change.LastLines = change.LastLines[n-maxReasonLines:]
		}
	}
	adv, err := d.store.AdvanceDeployment(ctx, dep.ID, dep.Step, change)
	if errors.Is(err, store.ErrDeploymentNotFound) {
		return false, nil // the app is gone
	}
	if err != nil {
		return true, err
	}
	if adv.Applied {
		d.report(dep, adv)
		d.changed.notify()
	}
	if err := d.mirror.SyncApp(ctx, dep.App); err != nil {
		return true, err
	}
	return adv.Deployment.Active() || adv.Next != nil, nil
}

// report logs what a step did and emits the app's events.
func (d *Deployer) report(before store.Deployment, adv store.Advance) {
	dep := adv.Deployment
	log := d.log.With("app", dep.App, "release", dep.New.Version, "deployment", dep.ID)
	switch {
	case dep.Status == types.DeployRollingBack && before.Status != types.DeployRollingBack:
		log.Warn("deployment failed; rolling back", "previous", dep.Old.Version, "reason", dep.Error)
		d.emit(dep.App, fmt.Sprintf("deploy of v%d failed, rolling back to v%d: %s", dep.New.Version, dep.Old.Version, dep.Error))
	case dep.Status == types.DeployComplete:
		log.Info("deployed", "previous", dep.Old.Version)
		d.emit(dep.App, fmt.Sprintf("deployed v%d", dep.New.Version))
	case dep.Status == types.DeployRolledBack:
		log.Warn("deployment rolled back; the previous release runs", "previous", dep.Old.Version, "reason", dep.Error)
		msg := fmt.Sprintf("rolled back to v%d", dep.Old.Version)
		if dep.ConfigRestored {
			msg += fmt.Sprintf("; the config is v%d's again", dep.Old.Version)
			log.Warn("config restored to the previous release's", "previous", dep.Old.Version)
		}
		d.emit(dep.App, msg)
	case dep.Status == types.DeployFailed:
		log.Warn("deployment failed", "reason", dep.Error)
		d.emit(dep.App, fmt.Sprintf("deploy of v%d failed: %s", dep.New.Version, dep.Error))
	default:
		log.Debug("deployment step", "processes", dep.Processes)
	}
	if next := adv.Next; next != nil {
		d.Announce(*next)
	}
}

// Announce logs and emits the start of a deployment (or its completion
// when it had nothing to run).
func (d *Deployer) Announce(dep store.Deployment) {
	switch dep.Status {
	case types.DeployRunning:
		d.log.Info("deploying", "app", dep.App, "release", dep.New.Version, "strategy", dep.Strategy, "deployment", dep.ID)
		d.emit(dep.App, fmt.Sprintf("deploying v%d (%s)", dep.New.Version, dep.Strategy))
	case types.DeployComplete:
		d.log.Info("deployed", "app", dep.App, "release", dep.New.Version, "deployment", dep.ID)
		d.emit(dep.App, fmt.Sprintf("deployed v%d", dep.New.Version))
	case types.DeployPending:
		d.emit(dep.App, fmt.Sprintf("v%d waits for the running deployment", dep.New.Version))
	}
}

// TimeoutOf is the deploy timeout of dep.
func (d *Deployer) TimeoutOf(dep store.Deployment) time.Duration {
	if dep.Timeout > 0 {
		return time.Duration(dep.Timeout) * time.Second
	}
	return d.timeout
}

// jobView is what the job states say about one deployment.
type jobView struct {
	// upNew and upOld count the jobs up of the new and the old release, by
	// type.
	upNew, upOld map[string]int
	// crashed are the new release's crashed jobs, by job ID.
	crashed []keyspace.JobState
	// notUp are the new release's jobs that are neither up nor crashed,
	// by job ID.
	notUp []keyspace.JobState
	// hostsNew are the hosts with a job up of the new release, hostsOld
	// those with a job (in any state) of the old release, by type.
	hostsNew, hostsOld map[string]map[string]bool
}

// covered reports whether the new release has a job up of typ on every
// host where the old release has one, and on one host at least: a
// per-host type (types.SystemProcess.PerHost) is then fully deployed.
func (v jobView) covered(typ string) bool {
	if len(v.hostsNew[typ]) == 0 {
		return false
	}
	for h := range v.hostsOld[typ] {
		if !v.hostsNew[typ][h] {
			return false
		}
	}
	return true
}

// ready reports whether the new release's jobs of p's type are all up: its
// count of them, or for a per-host type one on every host (covered).
func (v jobView) ready(p store.DeploymentProcess) bool {
	if p.PerHost {
		return v.covered(p.Type)
	}
	return v.upNew[p.Type] >= p.NewCount
}

// addHost records host in m under typ.
func addHost(m map[string]map[string]bool, typ, host string) {
	if m[typ] == nil {
		m[typ] = map[string]bool{}
	}
	m[typ][host] = true
}

func viewJobs(dep store.Deployment, states []keyspace.JobState) jobView {
	v := jobView{upNew: map[string]int{}, upOld: map[string]int{}, hostsNew: map[string]map[string]bool{}, hostsOld: map[string]map[string]bool{}}
	for _, st := range states {
		if st.App != dep.App {
			continue
		}
		switch {
		case st.Release == dep.New.ID && st.State == keyspace.StateUp:
			addHost(v.hostsNew, st.Type, st.HostID)
		case st.Release == dep.Old.ID && dep.Old.ID != "":
			addHost(v.hostsOld, st.Type, st.HostID)
		}
		switch {
		case st.Release == dep.New.ID && st.State == keyspace.StateUp:
			v.upNew[st.Type]++
		case st.Release == dep.New.ID && st.State == keyspace.StateCrashed:
			v.crashed = append(v.crashed, st)
		case st.Release == dep.New.ID && st.State == keyspace.StateStarting:
			v.notUp = append(v.notUp, st)
		case st.Release == dep.Old.ID && dep.Old.ID != "" && st.State == keyspace.StateUp:
			v.upOld[st.Type]++
		}
	}
	byID := func(a, b keyspace.JobState) int { return strings.Compare(a.JobID, b.JobID) }
	slices.SortFunc(v.crashed, byID)
	slices.SortFunc(v.notUp, byID)
	return v
}

// decide returns the next step of the active deployment dep, given the
// jobs and the time: its new status and steps, and the job that made it
// fail (nil when none did or none is known). changed is false when there
// is nothing to store.
//
// Running, a crashed job of the new release fails the deployment at once,
// and so do new jobs not up within timeout of their start. Otherwise each
// process type moves one step, to a new count of the new release (N) and
// of the old one (L), for a count W of the new release:
//
//   - all-at-once, or nothing to replace: N = W at once; the old jobs stop
//     when the deployment completes.
//   - one-by-one: while N+L == W, one new job starts (N+1); once all N
//     new jobs are up and N+L > W, one old job stops (L-1). So the jobs
//     asked for are never fewer than W and never more than W+1, and an old
//     job stops only once a new one is up in its place.
//
// A per-host type (store.DeploymentProcess.PerHost) has one job on every
// eligible host whatever its count, so its counts only say whether each
// release's formation exists: the new release's formation comes (N = W),
// the old one stays (L > 0) until the new release has a job up on every
// host where the old release has a job (jobView.covered), and then goes
// (L = 0), which stops the old jobs; its new jobs are late when they do
// not cover those hosts within timeout.
//
// The deployment completes when every type has its W new jobs up, or its
// hosts covered (the last old jobs stop then). Failing, a deployment from a running release rolls
// back: the old release gets its counts again, and once its jobs are up
// (or timeout has passed) the new release's jobs stop. Without a running
// release to fall back to, it fails and the new release stays.
func decide(dep store.Deployment, v jobView, now time.Time, timeout time.Duration) (store.DeploymentChange, *keyspace.JobState, bool) {
	change := store.DeploymentChange{Status: dep.Status, Processes: slices.Clone(dep.Processes)}
	for i := range change.Processes {
		p := &change.Processes[i]
		p.Want = p.NewCount
		p.Up = min(v.upNew[p.Type], p.NewCount)
		if p.PerHost && p.NewCount > 0 {
			// Hosts with a new job up, of those that want one.
			p.Up = len(v.hostsNew[p.Type])
			p.Want = p.Up
			for h := range v.hostsOld[p.Type] {
				if !v.hostsNew[p.Type][h] {
					p.Want++
				}
			}
		}
	}
	fail := func(reason string, culprit *keyspace.JobState) (store.DeploymentChange, *keyspace.JobState, bool) {
		change.Status = types.DeployFailed
		if dep.FromRunning {
			change.Status = types.DeployRollingBack
		}
		change.Error = reason
		return change, culprit, true
	}
	if dep.Status == types.DeployRollingBack {
		ready := true
		for _, p := range dep.Processes {
			if v.upOld[p.Type] < p.OldCount {
				ready = false
			}
		}
		if ready || now.Sub(dep.RollbackAt) >= timeout {
			change.Status = types.DeployRolledBack
			return change, nil, true
		}
		return change, nil, progressChanged(dep.Processes, change.Processes)
	}

	if len(v.crashed) > 0 {
		st := v.crashed[0]
		return fail(fmt.Sprintf("v%d did not come up: %s", dep.New.Version, jobCrash(st)), &st)
	}
	for _, p := range change.Processes {
		late := min(p.Started, p.NewCount) > v.upNew[p.Type]
		reason := fmt.Sprintf("v%d did not come up within %s: %s: %d of %d new jobs up", dep.New.Version, timeout,
			p.Type, v.upNew[p.Type], min(p.Started, p.NewCount))
		if p.PerHost {
			late = min(p.Started, p.NewCount) > 0 && !v.covered(p.Type)
			reason = fmt.Sprintf("v%d did not come up within %s: %s: new jobs up on %d of %d hosts", dep.New.Version, timeout,
				p.Type, p.Up, max(p.Want, 1))
		}
		if late && now.Sub(p.StepAt) >= timeout {
			for _, st := range v.notUp {
				if st.Type == p.Type {
					return fail(fmt.Sprintf("v%d did not come up within %s: %s", dep.New.Version, timeout, describeJob(st)), &st)
				}
			}
			return fail(reason, nil)
		}
	}
	done := true
	for _, p := range dep.Processes {
		if p.NewCount > 0 && (p.Started < p.NewCount || !v.ready(p)) {
			done = false
		}
	}
	if done {
		change.Status = types.DeployComplete
		return change, nil, true
	}
	stepped := false
	for i := range change.Processes {
		p := &change.Processes[i]
		n, l, w := min(p.Started, p.NewCount), p.OldLeft, p.NewCount
		switch {
		case !dep.FromRunning || dep.Strategy == types.StrategyAllAtOnce:
			n = w
		case (v.upNew[p.Type] >= n && !p.PerHost || p.PerHost && v.covered(p.Type)) && n+l > w && l > 0:
			l--
		case n+l < w:
			n = w - l
		case n+l == w && n < w:
			n++
		}
		if n > p.Started {
			p.StepAt = now
		}
		if n != p.Started || l != p.OldLeft {
			p.Started, p.OldLeft = n, l
			stepped = true
		}
	}
	return change, nil, stepped || progressChanged(dep.Processes, change.Processes)
}

// progressChanged reports whether the progress of some type differs.
func progressChanged(before, after []store.DeploymentProcess) bool {
	for i := range before {
		if before[i].Up != after[i].Up || before[i].Want != after[i].Want {
			return true
		}
	}
	return false
}

// jobCrash says which job crashed and why, "web.1 (demo.web.1.3fa9c2d1e0b4)
// crashed: exit status 1".
func jobCrash(st keyspace.JobState) string {
	name := jobName(st)
	switch {
	case st.Error != "":
		return name + " crashed: " + st.Error
	case st.ExitCode != nil:
		return fmt.Sprintf("%s crashed: exit status %d", name, *st.ExitCode)
	}
	return name + " crashed"
}

// jobName is "web.1 (demo.web.1.3fa9c2d1e0b4)": the type and index of a
// job and its ID.
func jobName(st keyspace.JobState) string {
	parts := strings.Split(st.JobID, ".")
	if len(parts) == 4 {
		return fmt.Sprintf("%s.%s (%s)", parts[1], parts[2], st.JobID)
	}
	return fmt.Sprintf("%s (%s)", st.Type, st.JobID)
}

// describeJob says what is wrong with a job of a release that did not
// come up.
func describeJob(st keyspace.JobState) string {
	name := fmt.Sprintf("%s (%s)", st.Type, st.JobID)
	switch {
	case st.State == keyspace.StateCrashed:
		return crashSummary(st)
	case st.State == keyspace.StateStarting && !st.StartedAt.IsZero() && st.Type == "web":
		return fmt.Sprintf("%s runs, but nothing answered on $PORT (%d): the web process must listen on the port in $PORT", name, types.WebPort)
	case st.State == keyspace.StateStarting && !st.StartedAt.IsZero():
		return name + " runs, but never passed its health check"
	case st.State == keyspace.StateStarting:
		return name + " never started"
	}
	return fmt.Sprintf("%s is %s", name, st.State)
}

// crashSummary says why a job crashed, "web crashed: image not found: x".
func crashSummary(st keyspace.JobState) string {
	switch {
	case st.Error != "":
		return st.Type + " crashed: " + st.Error
	case st.ExitCode != nil:
		return fmt.Sprintf("%s crashed: exit status %d", st.Type, *st.ExitCode)
	}
	return st.Type + " crashed"
}

// jobStates lists the states of every job of the cluster.
func (d *Deployer) jobStates(ctx context.Context) ([]keyspace.JobState, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdkv.Timeout)
	defer cancel()
	resp, err := d.etcd.Get(ctx, d.space.Jobs(), clientv3.WithPrefix())
	if err != nil {
		return nil, etcdkv.Err("list job states", err)
	}
	out := make([]keyspace.JobState, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var st keyspace.JobState
		if err := json.Unmarshal(kv.Value, &st); err != nil {
			d.log.Warn("undecodable job state", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, st)
	}
	return out, nil
}
