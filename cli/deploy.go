package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

// stepPrefix starts the progress lines of a deployment, as in build output.
const stepPrefix = "-----> "

func (r *runner) deployCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "deploy",
		Usage: "follow the running deployment, or show how releases are deployed",
		Description: "Without a subcommand: follows the app's running deployment until it ends (exit\n" +
			"status 1 if it fails), or, when none runs, shows the deploy settings and the\n" +
			"last deployment.\n\n" +
			"Strategies: one-by-one (the default) starts one new job of each process type,\n" +
			"waits until it is up, then stops one old job, and repeats; all-at-once starts\n" +
			"all the new jobs and stops the old ones once the new ones are up. A new job\n" +
			"that crashes, or is not up within the deploy timeout, fails the deployment:\n" +
			"the old release keeps running at full strength.",
		Flags:  []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
		Action: r.deploy,
		Subcommands: []*urfave.Command{
			{
				Name:      "strategy",
				Usage:     "set how new releases replace the running one: one-by-one or all-at-once",
				ArgsUsage: "NAME",
				Flags:     []urfave.Flag{clusterFlag(), appFlag()},
				Action:    r.deployStrategy,
			},
			{
				Name:      "timeout",
				Usage:     "set how long, in seconds, a new job has to come up (default: the cluster's)",
				ArgsUsage: "SECONDS|default",
				Flags:     []urfave.Flag{clusterFlag(), appFlag()},
				Action:    r.deployTimeout,
			},
		},
	}
}

func (r *runner) deploymentsCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "deployments",
		Usage: "list an app's deployments",
		Description: "Lists the app's latest deployments, newest first: the releases it moved\n" +
			"between, the strategy, the state (pending, running, rolling back, complete,\n" +
			"failed, rolled back, superseded), the progress or why it failed, and when.",
		Flags:  []urfave.Flag{clusterFlag(), appFlag(), jsonFlag()},
		Action: r.deployments,
	}
}

// noWaitFlag is --no-wait, on the commands that make a release.
func noWaitFlag() urfave.Flag {
	return &urfave.BoolFlag{Name: "no-wait", Usage: "return once the release is made (gantry deploy follows its deployment)", DisableDefaultText: true}
}

func (r *runner) deploy(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	deps, err := cl.ListDeployments(c.Context, app)
	if err != nil {
		return err
	}
	if id := oldestUnended(deps); id != "" && !c.Bool("json") {
		// Follow it, then the one that waited behind it.
		for id != "" {
			if err := r.followDeployment(c.Context, cl, app, id); err != nil {
				return err
			}
			if deps, err = cl.ListDeployments(c.Context, app); err != nil {
				return err
			}
			id = oldestUnended(deps)
		}
		return nil
	}
	st, err := cl.GetDeploySettings(c.Context, app)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		out := struct {
			Settings   *types.DeploySettings `json:"settings"`
			Deployment *types.Deployment     `json:"last_deployment"`
		}{Settings: st}
		if len(deps) > 0 {
			out.Deployment = &deps[0]
		}
		return writeJSON(r.stdout, out)
	}
	var last *types.Deployment
	if len(deps) > 0 {
		last = &deps[0]
	}
	writeDeploySettings(r.stdout, app, st, last, r.now())
	return nil
}

// oldestUnended returns the ID of the oldest deployment of deps (newest
// first) that has not ended, "" when all have.
func oldestUnended(deps []types.Deployment) string {
	for i := len(deps) - 1; i >= 0; i-- {
		if !deps[i].Ended() {
			return deps[i].ID
		}
	}
	return ""
}

// writeDeploySettings prints an app's deploy settings and its last
// deployment.
func writeDeploySettings(w io.Writer, app string, st *types.DeploySettings, last *types.Deployment, now time.Time) {
	fmt.Fprintf(w, "=== %s deploy settings\n", app)
	tw := newTable(w)
	fmt.Fprintf(tw, "Strategy:\t%s\n", st.Strategy)
	fmt.Fprintf(tw, "Timeout:\t%s\n", formatTimeout(st))
	if last == nil {
		fmt.Fprintf(tw, "Last deployment:\tnone\n")
	} else {
		fmt.Fprintf(tw, "Last deployment:\t%s, %s (%s ago)\n", formatMove(*last), stateName(last.State), formatAge(now.Sub(last.CreatedAt)))
		if s := deploymentSummary(*last); s != "" {
			fmt.Fprintf(tw, "\t%s\n", s)
		}
	}
	_ = tw.Flush()
}

// formatTimeout prints a deploy timeout, "120s (default)".
func formatTimeout(st *types.DeploySettings) string {
	s := fmt.Sprintf("%ds", st.Timeout)
	if st.TimeoutDefault {
		s += " (default)"
	}
	return s
}

func (r *runner) deployStrategy(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	name := c.Args().First()
	return r.updateDeploySettings(c, types.DeploySettingsRequest{Strategy: &name})
}

func (r *runner) deployTimeout(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	n, err := parseTimeout(c.Args().First())
	if err != nil {
		return usagef(c, "%v", err)
	}
	return r.updateDeploySettings(c, types.DeploySettingsRequest{Timeout: &n})
}

// parseTimeout reads a deploy timeout in seconds ("90", "90s"), or
// "default" (0).
func parseTimeout(s string) (int, error) {
	if s == "default" {
		return 0, nil
	}
	n, err := strconv.Atoi(strings.TrimSuffix(s, "s"))
	if err != nil || n < 1 || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("invalid argument %q: the deploy timeout must be a positive number of seconds, e.g. 120, or default", s)
	}
	return n, nil
}

func (r *runner) updateDeploySettings(c *urfave.Context, req types.DeploySettingsRequest) error {
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	st, err := cl.UpdateDeploySettings(c.Context, app, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Deploys of %s: %s, timeout %s\n", app, st.Strategy, formatTimeout(st))
	return nil
}

func (r *runner) deployments(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	deps, err := cl.ListDeployments(c.Context, app)
	if err != nil {
		return err
	}
	if deps == nil {
		deps = []types.Deployment{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, deps)
	}
	if len(deps) == 0 {
		fmt.Fprintf(r.stdout, "%s has no deployments yet: deploy with git push, or gantry release create\n", app)
		return nil
	}
	writeDeployments(r.stdout, deps, r.now())
	return nil
}

// writeDeployments prints deps as a table, and under a failed one the
// last lines of output of the job that failed.
func writeDeployments(w io.Writer, deps []types.Deployment, now time.Time) {
	tw := newTable(w)
	fmt.Fprintln(tw, "ID\tRELEASES\tSTRATEGY\tSTATE\tCREATED\tPROGRESS / REASON")
	for _, d := range deps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s ago\t%s\n", shortID(d.ID), formatMove(d), d.Strategy, stateName(d.State),
			formatAge(now.Sub(d.CreatedAt)), deploymentSummary(d))
		if d.Failed() && len(d.LastLines) > 0 {
			for _, l := range d.LastLines {
				fmt.Fprintf(tw, "\t\t\t\t\t  | %s\n", l)
			}
		}
	}
	_ = tw.Flush()
}

// shortID is the first 8 characters of a deployment ID.
func shortID(id string) string {
	return id[:min(8, len(id))]
}

// formatMove prints the releases a deployment moves between, "v6 → v7",
// or "v7" without an old release.
func formatMove(d types.Deployment) string {
	if d.OldRelease == 0 {
		return fmt.Sprintf("v%d", d.NewRelease)
	}
	return fmt.Sprintf("v%d → v%d", d.OldRelease, d.NewRelease)
}

// stateName prints a deployment state for people: "rolled back".
func stateName(state string) string {
	return strings.ReplaceAll(state, "_", " ")
}

// deploymentSummary is the progress of a deployment that runs, or why one
// failed.
func deploymentSummary(d types.Deployment) string {
	switch {
	case d.Reason != "":
		return oneLine(d.Reason)
	case d.State == types.DeployPending, d.State == types.DeploySuperseded:
		return ""
	}
	return d.Progress()
}

// followDeployment shows deployment id of app until it ends: a live line
// on a terminal, a line per change otherwise, then "-----> Deployed v7", or
// an error saying why it failed with the last output of the job that
// failed.
func (r *runner) followDeployment(ctx context.Context, cl *client.Client, app, id string) error {
	p := newProgressLine(r.stdout)
	start := r.now()
	final, err := cl.FollowDeployment(ctx, app, id, func(d types.Deployment) {
		if !d.Ended() {
			p.set(stepPrefix+d.Status(), r.now().Sub(start))
		}
	})
	p.done()
	if err != nil {
		return err
	}
	return r.deployOutcome(*final)
}

// deployOutcome prints a deployment that ended well, or returns an error
// that says why it did not.
func (r *runner) deployOutcome(d types.Deployment) error {
	if d.State == types.DeployComplete {
		fmt.Fprintln(r.stdout, stepPrefix+d.Status())
		return nil
	}
	return deployError(d)
}

// deployError is the error of a deployment that failed: its status line,
// then the last output of the job that failed.
func deployError(d types.Deployment) error {
	var b strings.Builder
	b.WriteString(d.Status())
	if len(d.LastLines) > 0 {
		what := "the job that failed"
		if d.FailedJob != "" {
			what = d.FailedJob
		}
		fmt.Fprintf(&b, "\nLast output of %s:", what)
		for _, l := range d.LastLines {
			b.WriteString("\n  " + l)
		}
	}
	return errors.New(b.String())
}

// followMade follows the deployment that a command's new release started,
// unless --no-wait is set or the controller named none.
func (r *runner) followMade(c *urfave.Context, cl *client.Client, app, id string, version int) error {
	if id == "" || c.Bool("no-wait") {
		fmt.Fprintf(r.stdout, "Deploying v%d: gantry deploy follows it, gantry releases marks it current once it is up\n", version)
		return nil
	}
	return r.followDeployment(c.Context, cl, app, id)
}
