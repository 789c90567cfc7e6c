package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/store"
)

const (
	// deployPoll is how often the deployer looks at the jobs while a
	// deployment runs.
	deployPoll = time.Second
	// deployRetry is the pause after a failed look (PostgreSQL or etcd
	// unreachable).
	deployRetry = 5 * time.Second
)

// deployer ends the running deployments (see store.DeployRelease): once
// the new release has as many jobs up as its formation asks for, it
// finishes the deployment (the new release becomes current, the old one's
// formations go, so the scheduler stops the old jobs); when DeployTimeout
// passes first, it fails it (the new release's formations go and the old
// release keeps running). Either way it mirrors the app into etcd at once.
//
// It polls while deployments run and sleeps otherwise until poked. It
// keeps no state of its own: a restarted controller resumes the
// deployments PostgreSQL says are running.
type deployer struct {
	store   *store.Store
	etcd    *clientv3.Client
	space   keyspace.Space
	mirror  *mirror
	timeout time.Duration
	log     *slog.Logger
	events  events

	// wake holds a pending poke.
	wake chan struct{}
}

// poke makes the deployer look at the deployments soon.
func (d *deployer) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run ends deployments until ctx ends.
func (d *deployer) run(ctx context.Context) {
	timer := time.NewTimer(deployPoll)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-timer.C:
		}
		running, err := d.step(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("check deployments", "err", err)
		}
		switch {
		case err != nil:
			timer.Reset(deployRetry)
		case running:
			timer.Reset(deployPoll)
		}
	}
}

// step looks at every running deployment once and ends those that are
// done or late. It reports whether some are still running.
func (d *deployer) step(ctx context.Context) (bool, error) {
	deps, err := d.store.RunningDeployments(ctx)
	if err != nil || len(deps) == 0 {
		return false, err
	}
	states, err := d.jobStates(ctx)
	if err != nil {
		return true, err
	}
	running := false
	var errs []error
	for _, dep := range deps {
		still, err := d.check(ctx, dep, states)
		running = running || still
		if err != nil {
			errs = append(errs, fmt.Errorf("deployment of %s v%d: %w", dep.App, dep.New.Version, err))
		}
	}
	return running, errors.Join(errs...)
}

// check ends one deployment when its new release's jobs are up or it is
// late, and reports whether it is still running.
func (d *deployer) check(ctx context.Context, dep store.Deployment, states []keyspace.JobState) (bool, error) {
	dep, want, err := d.store.DeploymentProgress(ctx, dep.ID)
	if errors.Is(err, store.ErrDeploymentNotFound) {
		return false, nil // the app is gone
	}
	if err != nil {
		return true, err
	}
	if dep.Status != store.DeployRunning {
		return false, nil
	}
	up := map[string]int{}
	var crashes []string
	for _, st := range states {
		if st.App != dep.App || st.Release != dep.New.ID {
			continue
		}
		switch st.State {
		case keyspace.StateUp:
			up[st.Type]++
		case keyspace.StateCrashed:
			crashes = append(crashes, crashSummary(st))
		}
	}
	missing := missingJobs(want, up)
	if len(missing) == 0 {
		ended, err := d.store.FinishDeployment(ctx, dep.ID)
		if err != nil {
			return true, err
		}
		if ended {
			d.log.Info("deployed", "app", dep.App, "release", dep.New.Version, "previous", dep.Old.Version)
			d.events.emit(dep.App, fmt.Sprintf("deployed v%d", dep.New.Version))
		}
		return false, d.mirror.syncApp(ctx, dep.App)
	}
	if time.Since(dep.CreatedAt) < d.timeout {
		return true, nil
	}
	reason := fmt.Sprintf("v%d did not come up within %s: %s", dep.New.Version, d.timeout, strings.Join(missing, ", "))
	if len(crashes) > 0 {
		slices.Sort(crashes)
		reason += "; " + strings.Join(slices.Compact(crashes), "; ")
	}
	ended, err := d.store.FailDeployment(ctx, dep.ID, reason)
	if err != nil {
		return true, err
	}
	if ended {
		d.log.Warn("deployment failed; the previous release keeps running", "app", dep.App,
			"release", dep.New.Version, "previous", dep.Old.Version, "reason", reason)
		d.events.emit(dep.App, fmt.Sprintf("deploy of v%d failed, v%d keeps running: %s", dep.New.Version, dep.Old.Version, reason))
	}
	return false, d.mirror.syncApp(ctx, dep.App)
}

// missingJobs describes the process types with fewer jobs up than wanted,
// "web: 1 of 2 up", sorted by type.
func missingJobs(want, up map[string]int) []string {
	var out []string
	for _, typ := range slices.Sorted(maps.Keys(want)) {
		if up[typ] < want[typ] {
			out = append(out, fmt.Sprintf("%s: %d of %d up", typ, up[typ], want[typ]))
		}
	}
	return out
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
func (d *deployer) jobStates(ctx context.Context) ([]keyspace.JobState, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	resp, err := d.etcd.Get(ctx, d.space.Jobs(), clientv3.WithPrefix())
	if err != nil {
		return nil, etcdErr("list job states", err)
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
