package cli

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

func (r *runner) psCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "ps",
		Usage: "list an app's jobs by process type",
		Description: "Each job shows its state and for how long it has been in it, its host,\n" +
			"its published address and its release. Jobs that were stopped on purpose\n" +
			"(down) are left out unless --all is given.",
		Flags: []urfave.Flag{
			clusterFlag(), appFlag(), jsonFlag(),
			&urfave.BoolFlag{Name: "all", Usage: "also list the jobs that were stopped (down)", DisableDefaultText: true},
		},
		Action: r.ps,
	}
}

func (r *runner) ps(c *urfave.Context) error {
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
	jobs, err := cl.ListJobs(c.Context, app)
	if err != nil {
		return err
	}
	if !c.Bool("all") {
		jobs = slices.DeleteFunc(jobs, func(j types.Job) bool { return j.State == types.JobDown })
	}
	if jobs == nil {
		jobs = []types.Job{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, jobs)
	}
	if len(jobs) == 0 {
		fmt.Fprintf(r.stdout, "No processes running\nStart one with: gantry scale web=1\n")
		return nil
	}
	slices.SortStableFunc(jobs, func(a, b types.Job) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Index, b.Index), cmp.Compare(a.Release, b.Release))
	})
	now := r.now()
	for i := 0; i < len(jobs); {
		n := 1
		for i+n < len(jobs) && jobs[i+n].Type == jobs[i].Type {
			n++
		}
		if i > 0 {
			fmt.Fprintln(r.stdout)
		}
		fmt.Fprintf(r.stdout, "=== %s (%d)\n", jobs[i].Type, n)
		tw := newTable(r.stdout)
		for _, j := range jobs[i : i+n] {
			fmt.Fprintf(tw, "%s.%d\t%s\t%s\t%s\t%s\n", j.Type, j.Index, jobState(j, now), orDash(j.Host), orDash(j.Addr), formatRelease(j.Release))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// jobState describes a job's state for gantry ps: "up 3m",
// "crashed (exit 1, 2 restarts)", "starting 4s", "pending".
func jobState(j types.Job, now time.Time) string {
	var notes []string
	if j.State == types.JobCrashed {
		switch {
		case j.ExitCode != nil:
			notes = append(notes, fmt.Sprintf("exit %d", *j.ExitCode))
		case j.Error != "":
			notes = append(notes, j.Error)
		}
	}
	if j.Restarts == 1 {
		notes = append(notes, "1 restart")
	} else if j.Restarts > 1 {
		notes = append(notes, fmt.Sprintf("%d restarts", j.Restarts))
	}
	s := j.State
	since := j.UpdatedAt
	if (j.State == types.JobUp || j.State == types.JobStarting) && !j.StartedAt.IsZero() {
		since = j.StartedAt
	}
	if !since.IsZero() {
		s += " " + formatAge(now.Sub(since))
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s
}

// formatAge prints a duration the way gantry ps shows ages: "45s", "3m",
// "5h", "2d" (negative durations, from clock skew, print as "0s").
func formatAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", max(0, int(d/time.Second)))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
	}
}

func (r *runner) killCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "kill",
		Usage:     "kill a job (the scheduler starts a replacement)",
		ArgsUsage: "JOB",
		Description: "JOB is TYPE.INDEX as gantry ps shows it (web.1), or a job ID from\n" +
			"gantry ps --json.",
		Flags:  []urfave.Flag{clusterFlag(), appFlag()},
		Action: r.kill,
	}
}

// jobNameRegexp matches a job named as gantry ps shows it, "web.1".
var jobNameRegexp = regexp.MustCompile(`^([a-z][a-z0-9_-]{0,29})\.([0-9]{1,9})$`)

func (r *runner) kill(c *urfave.Context) error {
	if err := checkArgs(c, 1, 1); err != nil {
		return err
	}
	arg := c.Args().First()
	if arg == "" {
		return usagef(c, "the job is empty")
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	id, name := arg, arg
	if m := jobNameRegexp.FindStringSubmatch(arg); m != nil {
		jobs, err := cl.ListJobs(c.Context, app)
		if err != nil {
			return err
		}
		index, _ := strconv.Atoi(m[2])
		j, ok := findJob(jobs, m[1], index)
		if !ok {
			return fmt.Errorf("%s has no job %s (gantry ps lists them)", app, arg)
		}
		id, name = j.ID, fmt.Sprintf("%s (%s)", arg, j.ID)
	}
	if err := cl.KillJob(c.Context, app, id); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Killed %s; the scheduler starts a replacement\n", name)
	return nil
}

// findJob returns the job typ.index, of the newest release when a deploy
// runs jobs of two.
func findJob(jobs []types.Job, typ string, index int) (job types.Job, ok bool) {
	for _, j := range jobs {
		if j.Type == typ && j.Index == index && (!ok || j.Release > job.Release) {
			job, ok = j, true
		}
	}
	return job, ok
}

func (r *runner) restartCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "restart",
		Usage:     "replace the jobs of one process type, or all, with new ones",
		ArgsUsage: "[TYPE]",
		Description: "Each job is replaced by a new one of the same release; a new job is up\n" +
			"before an old one stops.",
		Flags:  []urfave.Flag{clusterFlag(), appFlag()},
		Action: r.restart,
	}
}

func (r *runner) restart(c *urfave.Context) error {
	if err := checkArgs(c, 0, 1); err != nil {
		return err
	}
	typ := c.Args().First()
	if c.NArg() == 1 {
		if err := validateProcessType(typ); err != nil {
			return usagef(c, "invalid argument %q: %v", typ, err)
		}
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	if err := cl.Restart(c.Context, app, typ); err != nil {
		return err
	}
	what := "all processes"
	if typ != "" {
		what = typ + " processes"
	}
	fmt.Fprintf(r.stdout, "Restarting %s of %s (gantry ps shows the jobs)\n", what, app)
	return nil
}
