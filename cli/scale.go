package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gantryhq/gantry/layer1/controller/types"
	urfave "github.com/urfave/cli/v2"
	"golang.org/x/term"
)

// pollInterval is how often gantry scale lists the jobs while it waits.
var pollInterval = 250 * time.Millisecond

// defaultScaleTimeout bounds how long gantry scale waits for the jobs.
const defaultScaleTimeout = 2 * time.Minute

// crashLimit is how many crashes of one process type, seen while waiting,
// make gantry scale give up and say why.
const crashLimit = 3

func (r *runner) scaleCommand() *urfave.Command {
	return &urfave.Command{
		Name:      "scale",
		Usage:     "show the process counts, or set them and wait for the jobs",
		ArgsUsage: "[TYPE=N...]",
		Description: "Without arguments, scale prints the formation (web=2 worker=1). With\n" +
			"arguments it sets the counts of the types named and waits until exactly\n" +
			"that many jobs of each are up on the current release and the others\n" +
			"have stopped, then prints how long it took. It fails, leaving the counts\n" +
			"set, when a type keeps crashing (showing the crash's last output) or\n" +
			"after --timeout. --no-wait returns as soon as the counts are set.",
		Flags: []urfave.Flag{
			clusterFlag(), appFlag(), jsonFlag(),
			&urfave.BoolFlag{Name: "no-wait", Usage: "return once the counts are set", DisableDefaultText: true},
			&urfave.DurationFlag{Name: "timeout", Value: defaultScaleTimeout, Usage: "give up waiting after `DURATION`"},
		},
		Action: r.scale,
	}
}

func (r *runner) scale(c *urfave.Context) error {
	if c.NArg() == 0 {
		return r.showFormation(c)
	}
	if c.Bool("json") {
		return usagef(c, "--json only applies to showing the formation (gantry scale without arguments)")
	}
	counts, err := parseCounts(c.Args().Slice())
	if err != nil {
		return usagef(c, "%v", err)
	}
	timeout := c.Duration("timeout")
	if timeout <= 0 {
		return usagef(c, "--timeout must be positive, not %s", timeout)
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	start := r.now()
	f, err := cl.Scale(c.Context, app, counts)
	if err != nil {
		return err
	}
	if c.Bool("no-wait") {
		fmt.Fprintf(r.stdout, "Scaling %s (not waiting: gantry ps shows the jobs)\n", formatCounts(counts))
		return nil
	}
	want := make(map[string]int, len(counts))
	for typ := range counts {
		want[typ] = f.Processes[typ]
	}
	w := &formationWaiter{jobs: cl, app: app, release: f.Release, want: want, progress: newProgressLine(r.stderr), now: r.now, start: start}
	if err := w.wait(c.Context, timeout); err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "Scaled %s in %s\n", formatCounts(want), r.now().Sub(start).Round(100*time.Millisecond))
	return nil
}

// showFormation prints the counts of the app's formation.
func (r *runner) showFormation(c *urfave.Context) error {
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	f, err := cl.GetFormation(c.Context, app)
	if errors.Is(err, types.ErrNoRelease) {
		f, err = &types.Formation{App: app}, nil
	}
	if err != nil {
		return err
	}
	if f.Processes == nil {
		f.Processes = map[string]int{}
	}
	if c.Bool("json") {
		return writeJSON(r.stdout, f)
	}
	if len(f.Processes) == 0 {
		fmt.Fprintf(r.stdout, "%s has no process types yet: deploy with git push, or gantry release create\n", app)
		return nil
	}
	fmt.Fprintln(r.stdout, formatFormation(*f))
	return nil
}

// formatFormation is formatCounts of f, where a per-host type that runs
// shows "type=per-host" rather than its count.
func formatFormation(f types.Formation) string {
	counts := maps.Clone(f.Processes)
	var perHost []string
	for _, typ := range f.PerHost {
		if counts[typ] > 0 {
			delete(counts, typ)
			perHost = append(perHost, typ)
		}
	}
	parts := strings.Fields(formatCounts(counts))
	for _, typ := range perHost {
		parts = append(parts, typ+"=per-host")
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// jobLister lists the jobs of an app; *client.Client is one.
type jobLister interface {
	ListJobs(ctx context.Context, app string) ([]types.Job, error)
}

// formationWaiter waits until the jobs of an app match a formation.
type formationWaiter struct {
	jobs jobLister
	app  string
	// release is the version whose jobs count.
	release int
	// want maps the process types waited for to their counts.
	want map[string]int
	// progress shows the state while waiting.
	progress *progressLine
	// now reads the clock; start is when the scale began, for the
	// elapsed time the progress line shows on a terminal.
	now   func() time.Time
	start time.Time
	// crashes tracks the crashes seen while waiting.
	crashes crashTracker
}

// wait polls the jobs every pollInterval until they converge, a process
// type keeps crashing, ctx ends or timeout passes. A controller that does
// not answer for a while (a restart, a proxy's 502) is polled again.
func (w *formationWaiter) wait(ctx context.Context, timeout time.Duration) (err error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if err != nil {
			w.progress.done()
		} else {
			w.progress.clear()
		}
	}()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	last := "the controller to list the jobs"
	for {
		jobs, err := w.jobs.ListJobs(wctx, w.app)
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil && wctx.Err() != nil:
			return w.timedOut(timeout, last)
		case err != nil && transient(err):
			last = "the controller: " + err.Error()
			w.progress.set("The controller does not answer; retrying", w.now().Sub(w.start))
		case err != nil:
			return fmt.Errorf("list the jobs of %s: %w", w.app, err)
		default:
			waiting := pending(convergence(w.release, w.want, jobs))
			if len(waiting) == 0 {
				return nil
			}
			last = formatWaiting(waiting)
			w.progress.set("Waiting for "+last, w.now().Sub(w.start))
			if err := w.crashes.observe(w.release, w.want, jobs); err != nil {
				return err
			}
		}
		select {
		case <-wctx.Done():
			if err := ctx.Err(); err != nil {
				return err
			}
			return w.timedOut(timeout, last)
		case <-ticker.C:
		}
	}
}

// timedOut is the error of a wait that ran out of time.
func (w *formationWaiter) timedOut(timeout time.Duration, last string) error {
	return fmt.Errorf("timed out after %s waiting for %s\nThe counts are set and the cluster keeps working on them: gantry ps shows the jobs", timeout, last)
}

// transient reports whether err may go away by itself: the controller or
// a proxy in front of it is unavailable, or the connection failed.
func transient(err error) bool {
	var apiErr *types.Error
	if errors.As(err, &apiErr) {
		switch apiErr.Status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr)
}

// typeState is how far the jobs of one process type are from its count.
type typeState struct {
	Type string
	// Want is the count.
	Want int
	// Up counts the jobs of the release that are up.
	Up int
	// Coming counts the jobs of the release on their way up (pending,
	// starting, crashed and about to be replaced).
	Coming int
	// Old counts the jobs still running that must stop: those of other
	// releases and those of the release being stopped.
	Old int
}

// converged reports whether exactly Want jobs are up and nothing else runs.
func (s typeState) converged() bool {
	return s.Up == s.Want && s.Coming == 0 && s.Old == 0
}

// convergence returns the state of each type of want, sorted by type.
func convergence(release int, want map[string]int, jobs []types.Job) []typeState {
	byType := make(map[string]*typeState, len(want))
	for typ, n := range want {
		byType[typ] = &typeState{Type: typ, Want: n}
	}
	for _, j := range jobs {
		s, ok := byType[j.Type]
		if !ok || j.State == types.JobDown {
			continue
		}
		switch {
		case j.Release != release || j.State == types.JobStopping:
			s.Old++
		case j.State == types.JobUp:
			s.Up++
		default:
			s.Coming++
		}
	}
	states := make([]typeState, 0, len(byType))
	for _, typ := range slices.Sorted(maps.Keys(byType)) {
		states = append(states, *byType[typ])
	}
	return states
}

// pending returns the states that have not converged.
func pending(states []typeState) []typeState {
	var out []typeState
	for _, s := range states {
		if !s.converged() {
			out = append(out, s)
		}
	}
	return out
}

// formatWaiting prints states as "web: 2/3 up, worker: 1/1 up (1 old)".
func formatWaiting(states []typeState) string {
	parts := make([]string, 0, len(states))
	for _, s := range states {
		p := fmt.Sprintf("%s: %d/%d up", s.Type, s.Up, s.Want)
		if s.Old > 0 {
			p += fmt.Sprintf(" (%d old)", s.Old)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// crashTracker counts the crashes of each process type seen while waiting.
// Job.Restarts counts the crashes of one index in a row, across the jobs
// that replace each other, so crash k of web.2 is the same event whether
// it is seen as a crashed job with Restarts k-1 or as its replacement with
// Restarts k. Crashes that happened before the first observation do not
// count; a count that drops means the run of crashes ended and a new one
// starts.
type crashTracker struct {
	// started is set after the first observation.
	started bool
	// slots maps "type.index" to the crashes in a row counted so far.
	slots map[string]int
	// crashes maps a type to the crashes seen while waiting.
	crashes map[string]int
}

// crashesOf returns how many crashes in a row job j shows: its restarts,
// plus the current crash.
func crashesOf(j types.Job) int {
	if j.State == types.JobCrashed {
		return j.Restarts + 1
	}
	return j.Restarts
}

// observe records the crashes shown by the jobs of release and returns an
// error describing the latest crash once one type of want reached
// crashLimit crashes.
func (t *crashTracker) observe(release int, want map[string]int, jobs []types.Job) error {
	cur := map[string]int{}
	for _, j := range jobs {
		if _, ok := want[j.Type]; ok && j.Release == release {
			slot := fmt.Sprintf("%s.%d", j.Type, j.Index)
			cur[slot] = max(cur[slot], crashesOf(j))
		}
	}
	if !t.started {
		t.started, t.slots, t.crashes = true, cur, map[string]int{}
		return nil
	}
	for slot, n := range cur {
		counted := t.slots[slot]
		if n < counted {
			counted = 0
		}
		typ, _, _ := strings.Cut(slot, ".")
		t.crashes[typ] += n - counted
		t.slots[slot] = n
	}
	for _, typ := range slices.Sorted(maps.Keys(t.crashes)) {
		if n := t.crashes[typ]; n >= crashLimit {
			j, ok := latestCrash(release, typ, jobs)
			return crashError(typ, n, j, ok)
		}
	}
	return nil
}

// latestCrash returns the job of typ and release that tells most about the
// latest crash: a crashed one before a running one, then the one with the
// most restarts. ok is false when no job of typ is listed.
func latestCrash(release int, typ string, jobs []types.Job) (job types.Job, ok bool) {
	for _, j := range jobs {
		if j.Type != typ || j.Release != release {
			continue
		}
		better := !ok ||
			(j.State == types.JobCrashed) != (job.State == types.JobCrashed) && j.State == types.JobCrashed ||
			(j.State == types.JobCrashed) == (job.State == types.JobCrashed) && crashesOf(j) > crashesOf(job)
		if better {
			job, ok = j, true
		}
	}
	return job, ok
}

// crashError says that typ keeps crashing, with what j knows of the cause.
func crashError(typ string, n int, j types.Job, ok bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s keeps crashing: %d crashes while waiting", typ, n)
	if ok {
		fmt.Fprintf(&b, "\n%s.%d %s", j.Type, j.Index, crashCause(j))
		if len(j.LastLines) > 0 {
			fmt.Fprintf(&b, "\nLast lines of %s.%d:", j.Type, j.Index)
			for _, l := range j.LastLines {
				b.WriteString("\n  " + l)
			}
		}
	}
	b.WriteString("\nThe counts are set; fix the app and deploy again, or scale it down (gantry ps shows the jobs)")
	return errors.New(b.String())
}

// crashCause says how job j ended: "exited with status 1: <error>".
func crashCause(j types.Job) string {
	var parts []string
	if j.ExitCode != nil {
		parts = append(parts, fmt.Sprintf("exited with status %d", *j.ExitCode))
	}
	if j.Error != "" {
		parts = append(parts, j.Error)
	}
	if len(parts) == 0 {
		return "crashed"
	}
	return strings.Join(parts, ": ")
}

// progressLine shows one line of progress. On a terminal it is rewritten
// in place, followed by the time elapsed, and cut to the terminal's width
// so that it never wraps; otherwise a line is printed each time it
// changes.
type progressLine struct {
	w   io.Writer
	tty bool
	// cols is the terminal's width in columns, 0 when unknown.
	cols int
	// last is the text shown last; width its length on a terminal.
	last  string
	width int
}

// newProgressLine returns a progress line on w, live when w is a terminal.
func newProgressLine(w io.Writer) *progressLine {
	p := &progressLine{w: w, tty: isTerminal(w)}
	if f, ok := w.(*os.File); ok && p.tty {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil {
			p.cols = cols
		}
	}
	return p
}

// set shows line, after elapsed on a terminal, unless it is shown already.
func (p *progressLine) set(line string, elapsed time.Duration) {
	if !p.tty {
		if line != p.last {
			p.last = line
			fmt.Fprintln(p.w, line)
		}
		return
	}
	suffix := fmt.Sprintf(" [%s]", elapsed.Truncate(time.Second))
	if r := []rune(line); p.cols > 1 && len(r)+len(suffix) > p.cols-1 {
		// Cut the line, not the time: the time shows that it is live.
		line = string(r[:max(0, p.cols-1-len(suffix))])
	}
	text := line + suffix
	if text == p.last {
		return
	}
	p.last = text
	n := utf8.RuneCountInString(text)
	pad := max(0, p.width-n)
	fmt.Fprintf(p.w, "\r%s%s", text, strings.Repeat(" ", pad))
	if pad > 0 {
		fmt.Fprintf(p.w, "\r%s", text)
	}
	p.width = n
}

// done ends the line on a terminal, so that what follows starts on its own
// and the last state stays visible.
func (p *progressLine) done() {
	if p.tty && p.width > 0 {
		fmt.Fprintln(p.w)
		p.width, p.last = 0, ""
	}
}

// clear erases the line on a terminal.
func (p *progressLine) clear() {
	if p.tty && p.width > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		p.width, p.last = 0, ""
	}
}
