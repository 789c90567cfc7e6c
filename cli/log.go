package cli

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"time"

	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
	urfave "github.com/urfave/cli/v2"
)

// logTimeFormat is the time at the start of each log line, in UTC.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func (r *runner) logCommand() *urfave.Command {
	return &urfave.Command{
		Name:  "log",
		Usage: "show an app's log: its output, the router's lines and the platform's events",
		Description: "Lines come from every host, in time order, each with its time and where it\n" +
			"came from: app[web.1] for the output of a process, router for a request to\n" +
			"the app, gantry for the platform's events (deploys, scales, crashes,\n" +
			"restarts). -f keeps printing new lines until interrupted.",
		Flags: []urfave.Flag{
			clusterFlag(), appFlag(),
			&urfave.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new lines", DisableDefaultText: true},
			&urfave.IntFlag{Name: "num", Aliases: []string{"n"}, Value: logtypes.DefaultLines, Usage: "print the last `N` lines first"},
			&urfave.StringFlag{Name: "type", Aliases: []string{"t"}, Usage: "only the lines of process type `TYPE` (e.g. web)"},
			&urfave.StringFlag{Name: "job", Aliases: []string{"j"}, Usage: "only the lines of job `JOB` (its ID, or e.g. web.1)"},
			&urfave.StringFlag{Name: "since", Usage: "only the lines since `WHEN`: a duration ago (10m, 2h) or a time (2026-11-24T22:41:03Z)"},
			&urfave.BoolFlag{Name: "json", Usage: "print each line as JSON", DisableDefaultText: true},
		},
		Action: r.logs,
	}
}

func (r *runner) logs(c *urfave.Context) error {
	if err := checkArgs(c, 0, 0); err != nil {
		return err
	}
	q := logtypes.Query{Lines: c.Int("num"), Follow: c.Bool("follow"), Type: c.String("type"), Job: c.String("job")}
	if q.Lines < 0 {
		return usagef(c, "-n %d: want 0 or more lines", q.Lines)
	}
	if q.Type != "" && !logtypes.ValidType(q.Type) {
		return usagef(c, "-t %q: want a process type such as web", q.Type)
	}
	if q.Job != "" && !logtypes.ValidJob(q.Job) {
		return usagef(c, "-j %q: want a job ID (see gantry ps --json) or a process such as web.1", q.Job)
	}
	if s := c.String("since"); s != "" {
		t, err := parseSince(s, r.now())
		if err != nil {
			return usagef(c, "--since %q: %v", s, err)
		}
		q.Since = t
	}
	app, err := r.app(c)
	if err != nil {
		return err
	}
	cl, err := r.client(c)
	if err != nil {
		return err
	}
	emit := func(l logtypes.Line) error {
		_, err := io.WriteString(r.stdout, formatLogLine(l))
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(r.stdout)
		enc.SetEscapeHTML(false)
		emit = func(l logtypes.Line) error { return enc.Encode(l) }
	}
	err = cl.Log(c.Context, app, q, emit)
	switch {
	case q.Follow && c.Context.Err() != nil:
		return nil // interrupted: the normal end of following
	case q.Follow && err == nil:
		return errors.New("the controller ended the log stream (it stopped or restarted); run gantry log -f again")
	}
	return err
}

// parseSince reads --since: a duration before now ("10m", "1h30m") or an
// RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("want a duration of 0 or more")
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("want a duration like 10m or a time like 2026-11-24T22:41:03Z")
}

// formatLogLine prints a line as Heroku does, with a line break:
//
//	2026-11-24T22:41:03.123Z app[web.1]: listening on :8080
//	2026-11-24T22:41:04.001Z router: at=info method=GET path="/" ...
//	2026-11-24T22:41:05.000Z gantry: scaled web=2
func formatLogLine(l logtypes.Line) string {
	var b strings.Builder
	b.Grow(len(l.Msg) + 48)
	b.WriteString(l.Time.UTC().Format(logTimeFormat))
	b.WriteByte(' ')
	switch l.Source {
	case logtypes.SourceApp:
		b.WriteString("app")
		if p := l.Process(); p != "" {
			b.WriteString("[" + p + "]")
		}
	default:
		b.WriteString(l.Source)
	}
	b.WriteString(": ")
	b.WriteString(l.Msg)
	b.WriteByte('\n')
	return b.String()
}
