package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

const (
	// maxJobsDescribed bounds how many jobs a failed deployment describes.
	maxJobsDescribed = 3
	// lateOutput is how long before the deadline of a deployment the last
	// output of its jobs that are not up is read, for the report of its
	// failure.
	lateOutput = 3 * time.Second
)

// deploy follows the deployment of the build's release until its jobs are
// up, and reports it. The deployer ends running deployments (see
// deploy.go); a release that became current at once (the app ran no job)
// is watched here until its jobs are up or DeployTimeout passes.
func (b *buildRun) deploy(ctx context.Context, dep store.Deployment, res *types.Build) error {
	timeout := b.s.cfg.deployTimeout()
	// The deployer fails a deployment at the same deadline.
	deadline := dep.CreatedAt.Add(timeout)
	tick := time.NewTicker(deployPollInterval)
	defer tick.Stop()
	reported := time.Now()
	// What a failure report needs may be gone by then: the failed
	// release's jobs stop at once. So the jobs seen (by ID), the last
	// crash of each type, and, near the deadline, the last output of the
	// jobs that are not up are kept.
	seen := map[string]keyspace.JobState{}
	crashes := map[string]keyspace.JobState{}
	output := map[string][]string{}
	for {
		d, want, err := b.s.store.DeploymentProgress(ctx, dep.ID)
		if errors.Is(err, store.ErrDeploymentNotFound) {
			b.out.problem("The app was deleted while v%d was deploying", dep.New.Version)
			return failed(types.ErrDeployFailed, "the app was deleted")
		}
		if err != nil {
			return err
		}
		recs, err := b.s.readJobs(ctx, b.app)
		if err != nil {
			return err
		}
		up := map[string]int{}
		late := time.Until(deadline) < lateOutput
		for id, st := range recs.states {
			if st.Release != d.New.ID {
				continue
			}
			// A job stopping or down was stopped: by the failure of the
			// deployment, most likely. What it was before says why.
			if _, known := seen[id]; !known || (st.State != keyspace.StateStopping && st.State != keyspace.StateDown) {
				seen[id] = st
			}
			switch st.State {
			case keyspace.StateUp:
				up[st.Type]++
			case keyspace.StateCrashed:
				crashes[st.Type] = st
			}
			if late && st.State != keyspace.StateUp {
				if lines := b.s.jobLastLines(ctx, st); len(lines) > 0 {
					output[id] = lines
				}
			}
		}
		// A job gone (stopped or replaced) is not a job of the release.
		for id := range seen {
			if _, ok := recs.states[id]; !ok && d.Status != store.DeployFailed {
				delete(seen, id)
			}
		}
		progress := progressOf(want, up)
		report := failureReport{jobs: slices.Collect(maps.Values(seen)), crashes: crashes, output: output}
		switch d.Status {
		case store.DeployFailed:
			return b.deployFailed(ctx, d, d.Error, report)
		case store.DeploySuperseded:
			b.out.problem("v%d was replaced by a newer release before its jobs were up", d.New.Version)
			return failed(types.ErrDeployFailed, "v%d was replaced by a newer release while it deployed", d.New.Version)
		case store.DeployComplete:
			if allUp(want, up) {
				b.out.step("Deploying v%d: %s", d.New.Version, progress)
				if _, web := want["web"]; web {
					res.WebURL = b.s.cfg.webURL(b.app)
				}
				if res.WebURL != "" && want["web"] > 0 {
					b.out.text("=====> Application deployed: " + res.WebURL)
				} else {
					b.out.text("=====> Application deployed")
				}
				return nil
			}
			if time.Now().After(deadline) {
				return b.deployFailed(ctx, d, fmt.Sprintf("v%d did not come up within %s: %s", d.New.Version, timeout, progress), report)
			}
		}
		if time.Since(reported) >= deployReportEvery {
			b.out.text(fmt.Sprintf("       Waiting for v%d: %s", d.New.Version, progress))
			reported = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// failureReport is what a build saw of a release's jobs while it waited
// for them.
type failureReport struct {
	// jobs are the release's jobs at the last look.
	jobs []keyspace.JobState
	// crashes are the last crashed job of each type.
	crashes map[string]keyspace.JobState
	// output holds the last lines of output of jobs, by job ID, read
	// before the deadline.
	output map[string][]string
}

// deployFailed reports a release whose jobs did not come up: why, for a
// few of the jobs that were not up, and the last output of the first.
func (b *buildRun) deployFailed(ctx context.Context, d store.Deployment, reason string, r failureReport) error {
	b.out.problem("Deploy of v%d failed: %s", d.New.Version, reason)
	slices.SortFunc(r.jobs, func(x, y keyspace.JobState) int {
		return cmp.Or(cmp.Compare(x.Type, y.Type), cmp.Compare(x.JobID, y.JobID))
	})
	var causes []string
	described := map[string]bool{}
	describe := func(st keyspace.JobState) {
		if len(causes) >= maxJobsDescribed || described[st.JobID] {
			return
		}
		described[st.JobID] = true
		cause := describeJob(st)
		causes = append(causes, cause)
		b.out.problem("%s", cause)
		if len(causes) > 1 {
			return // the first job's output is enough
		}
		lines := r.output[st.JobID]
		if len(lines) == 0 {
			lines = b.s.jobLastLines(ctx, st)
		}
		if len(lines) > 0 {
			b.out.problem("Last output of %s:", st.JobID)
			for _, l := range lines {
				b.out.problem("  %s", l)
			}
		}
	}
	for _, st := range r.jobs {
		if st.State != keyspace.StateUp {
			describe(st)
		}
	}
	// Crashed jobs may have been replaced since; their crash still says
	// why.
	for _, typ := range slices.Sorted(maps.Keys(r.crashes)) {
		describe(r.crashes[typ])
	}
	msg := fmt.Sprintf("v%d did not come up", d.New.Version)
	if len(causes) > 0 {
		msg += ": " + causes[0]
	}
	if d.Status == store.DeployFailed && d.Old.Version > 0 {
		msg += fmt.Sprintf("; v%d keeps serving", d.Old.Version)
	}
	return failed(types.ErrDeployFailed, "%s", msg)
}

// progressOf describes how many jobs of each scaled-up type are up, e.g.
// "web 1/1 up, worker 0/2 up".
func progressOf(want, up map[string]int) string {
	var parts []string
	for _, typ := range slices.Sorted(maps.Keys(want)) {
		if want[typ] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d up", typ, min(up[typ], want[typ]), want[typ]))
		}
	}
	if len(parts) == 0 {
		return "no process is scaled up"
	}
	return strings.Join(parts, ", ")
}

// allUp reports whether every type has as many jobs up as wanted.
func allUp(want, up map[string]int) bool {
	for typ, n := range want {
		if up[typ] < n {
			return false
		}
	}
	return true
}
