package up

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// deployWait bounds the wait for one system app's deployment; the
// deployment itself fails sooner, after the app's deploy timeout (2
// minutes by default) for a new job that does not come up.
const deployWait = 5 * time.Minute

// createSystemApps makes, with their release current at once, the system
// apps of apps that do not exist yet or have no release (the first start);
// the others are left to deploySystemApps.
func createSystemApps(ctx context.Context, st *store.Store, apps []store.SystemApp, log *slog.Logger) error {
	for _, a := range apps {
		cur, err := st.GetApp(ctx, a.Name)
		switch {
		case errors.Is(err, store.ErrAppNotFound):
		case err != nil:
			return err
		case cur.Release > 0:
			continue
		}
		ch, err := st.EnsureSystemApp(ctx, a)
		if err != nil {
			return err
		}
		log.Info("system app made", "app", a.Name, "release", ch.Release.Version, "image", a.Image)
	}
	return nil
}

// deploySystemApps brings each system app of apps, in their order, to its
// release (store.EnsureSystemApp): when that deploys a new release, it
// waits until the controller's deployer has completed the deployment (the
// new job up, then the old one stopped) before it goes on to the next
// app, and fails when the deployment fails (the app keeps its old
// release, and the next apps theirs). It writes a line to out for each
// deployment.
func deploySystemApps(ctx context.Context, st *store.Store, apps []store.SystemApp, out io.Writer, log *slog.Logger) error {
	for _, a := range apps {
		if err := deploySystemApp(ctx, st, a, out, log); err != nil {
			return err
		}
	}
	return nil
}

// supersededTries bounds how often deploySystemApp looks again at an app
// whose deployment another one superseded.
const supersededTries = 5

// deploySystemApp is deploySystemApps for one app. A deployment that
// another superseded (the `gantryd up` of another host of the cluster,
// starting at the same time, made the same release) is not a failure: the
// app is looked at again, and is then at its release or deploying it.
func deploySystemApp(ctx context.Context, st *store.Store, a store.SystemApp, out io.Writer, log *slog.Logger) error {
	for try := 1; ; try++ {
		ch, err := st.EnsureSystemApp(ctx, a)
		if err != nil {
			return err
		}
		d := ch.Deployment
		if d == nil {
			if ch.Changed {
				log.Info("system app at a new release", "app", a.Name, "release", ch.Release.Version, "image", a.Image)
			}
			return nil
		}
		log.Info("deploying system app", "app", a.Name, "release", d.New.Version, "from", d.Old.Version,
			"strategy", d.Strategy, "image", a.Image, "deployment", d.ID)
		fmt.Fprintf(out, "-----> Deploying %s v%d (%s)\n", a.Name, d.New.Version, a.Image)
		started := time.Now()
		done, err := waitDeployment(ctx, st, a.Name, d.ID)
		if err != nil {
			return fmt.Errorf("deploy %s v%d: %w", a.Name, d.New.Version, err)
		}
		if done.Status == types.DeploySuperseded && try < supersededTries {
			log.Info("system app's deployment superseded by another: looking again", "app", a.Name, "release", d.New.Version)
			continue
		}
		if done.Status != types.DeployComplete {
			return fmt.Errorf("deploy %s v%d: %s: %s", a.Name, d.New.Version, done.Status, done.Error)
		}
		log.Info("system app deployed", "app", a.Name, "release", done.New.Version, "took", time.Since(started).Round(time.Millisecond))
		fmt.Fprintf(out, "       %s v%d deployed\n", a.Name, done.New.Version)
		return nil
	}
}

// waitDeployment polls deployment id of app until it has ended, ctx is
// done or deployWait has passed. Failed reads are retried: PostgreSQL is
// read directly, not through the controller being deployed.
func waitDeployment(ctx context.Context, st *store.Store, app, id string) (store.Deployment, error) {
	ctx, cancel := context.WithTimeout(ctx, deployWait)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		d, err := st.GetDeployment(ctx, app, id)
		if err == nil && d.Ended() {
			return d, nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return store.Deployment{}, fmt.Errorf("not over: %w (last: %v)", ctx.Err(), last)
			}
			return store.Deployment{}, fmt.Errorf("not over (%s, %d processes): %w", d.Status, len(d.Processes), ctx.Err())
		case <-tick.C:
		}
	}
}
