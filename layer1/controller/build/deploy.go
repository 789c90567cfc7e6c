package build

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// deploy follows the deployment of the build's release until it ends, and
// reports it as `gantry deploy` does: a "-----> Deploying v7 (one-by-one):
// web 2/3" line at each change (and again every deployReportEvery while
// nothing changes), then "-----> Deployed v7", or " !     Deploy of v7
// failed: ..." with the last lines of output of the job that failed. The
// deployer moves the deployment; the build only watches it, and the
// deployment goes on if the client goes away.
func (b *buildRun) deploy(ctx context.Context, dep store.Deployment, res *types.Build) error {
	tick := time.NewTicker(deployPollInterval)
	defer tick.Stop()
	last := ""
	reported := time.Now()
	for {
		wire, err := b.bd.cfg.Deployments.Deployment(ctx, b.app, dep.ID)
		if errors.Is(err, store.ErrNotFound) {
			b.out.problem("The app was deleted while v%d was deploying", dep.New.Version)
			return failed(types.ErrDeployFailed, "the app was deleted")
		}
		if err != nil {
			return err
		}
		line := wire.Status()
		switch {
		case wire.State == types.DeployComplete:
			b.out.step("%s", line)
			if webScaled(wire) {
				res.WebURL = b.bd.cfg.WebURL(b.app)
			}
			if res.WebURL != "" {
				b.out.text("=====> Application deployed: " + res.WebURL)
			} else {
				b.out.text("=====> Application deployed")
			}
			return nil
		case wire.Ended():
			reportFailure(b.out.problem, wire)
			return failed(types.ErrDeployFailed, "%s", line)
		case line != last && wire.State == types.DeployRollingBack:
			b.out.problem("%s", line)
			last, reported = line, time.Now()
		case line != last || time.Since(reported) >= deployReportEvery:
			b.out.step("%s", line)
			last, reported = line, time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.bd.cfg.Deployments.Changed():
		case <-tick.C:
		}
	}
}

// webScaled reports whether the deployment runs web jobs.
func webScaled(d types.Deployment) bool {
	for _, p := range d.Processes {
		if p.Type == "web" && p.Want > 0 {
			return true
		}
	}
	return false
}

// reportFailure writes, through problem, why deployment d failed and the
// last lines of output of the job that failed.
func reportFailure(problem func(format string, args ...any), d types.Deployment) {
	problem("%s", d.Status())
	if len(d.LastLines) == 0 {
		return
	}
	what := "the job"
	if d.FailedJob != "" {
		what = d.FailedJob
	}
	problem("%s", fmt.Sprintf("Last output of %s:", what))
	for _, l := range d.LastLines {
		problem("  %s", l)
	}
}
