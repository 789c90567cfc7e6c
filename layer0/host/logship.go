package host

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
	logtypes "github.com/gantryhq/gantry/layer1/logaggregator/types"
)

// logShipper sends the jobs' output and the agent's events about them
// (crashes, restarts) to the log aggregator (Config.LogURL). A nil
// *logShipper ships nothing.
type logShipper struct {
	s   *logclient.Shipper
	log *slog.Logger
}

// newLogShipper returns the shipper of cfg.LogURL, or nil when it is empty.
func newLogShipper(cfg Config, log *slog.Logger) (*logShipper, error) {
	if cfg.LogURL == "" {
		return nil, nil
	}
	s, err := logclient.NewShipper(logclient.ShipperConfig{URL: cfg.LogURL, Token: cfg.APIToken, Logger: log})
	if err != nil {
		return nil, err
	}
	return &logShipper{s: s, log: log}, nil
}

// close ships what is held, for a few seconds at most.
func (l *logShipper) close() {
	if l == nil {
		return
	}
	if err := l.s.Close(); err != nil {
		l.log.Warn("log lines lost at shutdown", "err", err)
	}
}

// jobLines returns the function that ships each line of a job's output as
// an app line, or nil when nothing is shipped (no aggregator, or a
// container being removed whose job the agent no longer knows).
func (l *logShipper) jobLines(as keyspace.Assignment, orphan bool) func(client.LogLine) {
	if l == nil || orphan {
		return nil
	}
	base := logtypes.Line{App: as.Spec.App, Source: logtypes.SourceApp, Type: as.Spec.Type, Job: as.JobID, Index: as.Index}
	return func(ll client.LogLine) {
		line := base
		line.Time, line.Msg = ll.Time, logtypes.CleanMsg(ll.Text)
		l.s.Ship(line)
	}
}

// event ships msg as a platform event about the job of as.
func (l *logShipper) event(as keyspace.Assignment, msg string) {
	if l == nil {
		return
	}
	l.s.Ship(logtypes.Line{
		App: as.Spec.App, Source: logtypes.SourceGantry, Type: as.Spec.Type, Job: as.JobID, Index: as.Index,
		Time: time.Now().UTC(), Msg: logtypes.CleanMsg(msg),
	})
}

// process names the job as the log shows it: "web.1".
func process(as keyspace.Assignment) string {
	if as.Index > 0 {
		return fmt.Sprintf("%s.%d", as.Spec.Type, as.Index)
	}
	return as.Spec.Type
}

// shipCrash ships the event of the job's crash, unless its state already
// says crashed (an earlier run of the agent shipped it). The job's last
// lines are in the log already.
func (j *job) shipCrash(code *int, msg string) {
	if j.orphan {
		return
	}
	if st, _ := j.snapshot(); st.State == keyspace.StateCrashed {
		return
	}
	text := process(j.asg) + " crashed"
	if code != nil {
		text += fmt.Sprintf(" (exit %d)", *code)
	}
	if msg != "" {
		text += ": " + msg
	}
	j.a.logs.event(j.asg, text)
}

// shipStart ships the event of a replacement job's start: the job of the
// same index crashed before.
func (j *job) shipStart() {
	if j.asg.Restarts > 0 && !j.orphan {
		j.a.logs.event(j.asg, fmt.Sprintf("%s restarting after a crash (restart %d)", process(j.asg), j.asg.Restarts))
	}
}
