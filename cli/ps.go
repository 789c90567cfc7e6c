package cli

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
)

func (r *runner) psCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "ps",
		Usage: "list an app's jobs by process type",
		Description: "Each job shows its state and for how long it has been in it, how many\n" +
			"times its index was restarted after a crash, its last exit, its host, its\n" +
			"published address and its release. A crashed job says when the scheduler\n" +
			"replaces it (the delay grows with each crash, up to 5 minutes; a new\n" +
			"release starts from zero), and it and a job started after a crash show\n" +
			"the last lines of output of that crash. Builds are listed as type build\n" +
			"with release -. Jobs that were stopped on purpose (down) are left out\n" +
			"unless --all is given.",
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
		fmt.Fprintf(r.stdout, "=== %s (%d)\n", printable(jobs[i].Type), n)
		if err := writeJobTable(r.stdout, jobs[i:i+n], now); err != nil {
			return err
		}
		i += n
	}
	return nil
}

// psLines is how many of the last lines of a crash gantry ps shows under
// a job; psLineWidth is how many characters of each.
const (
	psLines     = 5
	psLineWidth = 160
)

// writeJobTable prints jobs as a table with a header. A crashed job, and
// one waiting or starting after a crash, is followed by the last lines of
// output of that crash, indented under its state.
func writeJobTable(w io.Writer, jobs []types.Job, now time.Time) error {
	var buf bytes.Buffer
	tw := newTable(&buf)
	fmt.Fprintln(tw, "JOB\tSTATE\tRESTARTS\tLAST EXIT\tHOST\tADDRESS\tRELEASE\tCPU\tMEM")
	for _, j := range jobs {
		cpu, mem := usageText(j.Usage)
		fmt.Fprintf(tw, "%s.%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(j.Type), j.Index, jobState(j, now), j.Restarts,
			lastExitText(j, now), orDash(printable(j.Host)), orDash(printable(j.Addr)), psRelease(j.Release), cpu, mem)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Every cell is printable, so each row is one line.
	rows := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	indent := strings.Repeat(" ", strings.Index(rows[0], "STATE"))
	var out strings.Builder
	out.WriteString(rows[0] + "\n")
	for i, j := range jobs {
		out.WriteString(rows[i+1] + "\n")
		for _, l := range crashLines(j) {
			if l != "" {
				out.WriteString(indent + l)
			}
			out.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// usageText returns the CPU cell (percent of one core, as top shows it)
// and the memory cell (resident memory, and the limit when there is one)
// of a job; "-" for both when its host reported nothing.
func usageText(u *types.JobUsage) (cpu, mem string) {
	if u == nil {
		return "-", "-"
	}
	cpu = strconv.FormatFloat(u.CPU*100, 'f', 0, 64) + "%"
	mem = formatBytes(u.MemoryRSS)
	if u.MemoryLimit > 0 {
		mem += " / " + formatBytes(u.MemoryLimit)
	}
	return cpu, mem
}

// formatBytes prints n in binary units with three significant digits at
// most: 512 B, 4.5 KiB, 48.2 MiB, 128 MiB, 1.5 GiB.
func formatBytes(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10) + " B"
	}
	v, unit := float64(n), ""
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v, unit = v/1024, u
		if v < 1024 {
			break
		}
	}
	prec := 0
	switch {
	case v < 10:
		prec = 1
	case v < 100 && v != float64(int(v)):
		prec = 1
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + " " + unit
}

// lastExit returns the latest exit of j's index, or nil. A crashed job
// from a controller that does not send last_exit has its own.
func lastExit(j types.Job) *types.JobExit {
	if j.LastExit == nil && j.State == types.JobCrashed {
		return &types.JobExit{ExitCode: j.ExitCode, Error: j.Error, At: j.UpdatedAt, LastLines: j.LastLines}
	}
	return j.LastExit
}

// crashLines returns the last lines of output gantry ps shows under j:
// those of its own crash, or of the crash before it while it is not up
// yet; at most psLines of them, each cut to psLineWidth characters.
func crashLines(j types.Job) []string {
	e := lastExit(j)
	switch {
	case e == nil:
		return nil
	case j.State != types.JobCrashed && j.State != types.JobPending && j.State != types.JobStarting:
		return nil
	}
	lines := e.LastLines[max(0, len(e.LastLines)-psLines):]
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, cut(printable(l), psLineWidth))
	}
	return out
}

// jobState describes a job's state for gantry ps: "up 3m", "starting 4s",
// "pending", "crashed (exit 1, restarting in 20s)", "crashed (exit 1)" for
// a job that is not replaced (a one-off job, or one of a release being
// stopped) and "crashed (exit 1, restarting)" for one whose replacement
// is due and waits for a host.
func jobState(j types.Job, now time.Time) string {
	if j.State == types.JobCrashed {
		var notes []string
		if d := exitText(j.ExitCode, j.Error, 60); d != "" {
			notes = append(notes, d)
		}
		if !j.OneOff && !j.RestartAt.IsZero() {
			if wait := j.RestartAt.Sub(now); wait > 0 {
				notes = append(notes, "restarting in "+formatWait(wait))
			} else {
				notes = append(notes, "restarting")
			}
		}
		if len(notes) == 0 {
			return j.State
		}
		return j.State + " (" + strings.Join(notes, ", ") + ")"
	}
	s := printable(j.State)
	since := j.UpdatedAt
	if (j.State == types.JobUp || j.State == types.JobStarting) && !j.StartedAt.IsZero() {
		since = j.StartedAt
	}
	if !since.IsZero() {
		s += " " + formatAge(now.Sub(since))
	}
	return s
}

// lastExitText describes the latest exit of j's index for gantry ps:
// "exit 1, 2m ago", "image not found: demo:v2, 10s ago", or "-".
func lastExitText(j types.Job, now time.Time) string {
	e := lastExit(j)
	if e == nil {
		return "-"
	}
	s := cmp.Or(exitText(e.ExitCode, e.Error, 40), "crashed")
	if !e.At.IsZero() {
		s += ", " + formatAge(now.Sub(e.At)) + " ago"
	}
	return s
}

// exitText describes an exit: "exit 1", "exit 137: out of memory", or the
// error of a job that could not start, cut to width characters; "" when
// nothing is known.
func exitText(code *int, msg string, width int) string {
	msg = cut(printable(msg), width)
	switch {
	case code != nil && msg != "":
		return fmt.Sprintf("exit %d: %s", *code, msg)
	case code != nil:
		return fmt.Sprintf("exit %d", *code)
	default:
		return msg
	}
}

// psRelease prints a release version as "v3", or "-" for a job of no
// release (a build).
func psRelease(v int) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("v%d", v)
}

// printable replaces the control characters of s (newlines, tabs, escape
// sequences' ESC, ...) with spaces and trims the ends, so that a job's
// output or error cannot break the table or drive the terminal.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError || unicode.Is(unicode.Bidi_Control, r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// cut shortens s to at most n characters, ending with "..." when cut.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-3]) + "..."
}

// formatWait prints a wait for gantry ps, rounded up to the second: "20s",
// "4m30s", "1h05m".
func formatWait(d time.Duration) string {
	secs := int((d + time.Second - 1) / time.Second)
	switch {
	case secs < 60:
		return fmt.Sprintf("%ds", secs)
	case secs < 3600:
		return fmt.Sprintf("%dm%02ds", secs/60, secs%60)
	default:
		return fmt.Sprintf("%dh%02dm", secs/3600, secs%3600/60)
	}
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
	id, name, oneOff := arg, arg, false
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
		id, name, oneOff = j.ID, fmt.Sprintf("%s (%s)", arg, j.ID), j.OneOff
	}
	if err := cl.KillJob(c.Context, app, id); err != nil {
		return err
	}
	if oneOff {
		fmt.Fprintf(r.stdout, "Killed %s; it is a one-off job, so it is not replaced\n", name)
		return nil
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
