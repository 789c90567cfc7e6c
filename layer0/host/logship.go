package host

import (
	"fmt"
	"time"

	"github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// LogSink receives what the agent adds to the apps' logs: each line of its
// jobs' output and its events about them (crashes, restarts). The log
// aggregator's Shipper (layer1/logaggregator/client) is one; the caller
// that creates it closes it after Run returns.
//
// A job is named by its app, its process type (typ), its job ID and its
// index (0 for a one-off job). Both methods are called on the agent's
// goroutines and must not block.
type LogSink interface {
	// JobLine is a line of the job's output (stdout or stderr), without
	// its newline, as Docker received it at at.
	JobLine(app, typ, job string, index int, at time.Time, text string)
	// JobEvent is the agent's event about the job, such as
	// "web.1 crashed (exit 3)", at at.
	JobEvent(app, typ, job string, index int, at time.Time, msg string)
}

// jobLines returns the function that ships each line of a job's output to
// the sink, or nil when nothing is shipped (no sink, or a container being
// removed whose job the agent no longer knows).
func (a *agent) jobLines(as keyspace.Assignment, orphan bool) func(client.LogLine) {
	sink := a.cfg.Logs
	if sink == nil || orphan {
		return nil
	}
	app, typ, job, index := as.Spec.App, as.Spec.Type, as.JobID, as.Index
	return func(ll client.LogLine) {
		sink.JobLine(app, typ, job, index, ll.Time, ll.Text)
	}
}

// event ships msg as the agent's event about the job of as.
func (a *agent) event(as keyspace.Assignment, msg string) {
	if a.cfg.Logs == nil {
		return
	}
	a.cfg.Logs.JobEvent(as.Spec.App, as.Spec.Type, as.JobID, as.Index, time.Now().UTC(), msg)
}

// process names the job as the log shows it: "web.1".
func process(as keyspace.Assignment) string {
	if as.Index > 0 {
		return fmt.Sprintf("%s.%d", as.Spec.Type, as.Index)
	}
	return as.Spec.Type
}

// shipCrash ships the event of the job's crash (crash calls it only for a
// crash no earlier run of the agent recorded). The job's last lines are in
// the log already.
func (j *job) shipCrash(code *int, msg string) {
	if j.orphan {
		return
	}
	text := process(j.asg) + " crashed"
	if code != nil {
		text += fmt.Sprintf(" (exit %d)", *code)
	}
	if msg != "" {
		text += ": " + msg
	}
	j.a.event(j.asg, text)
}

// shipStart ships the event of a replacement job's start: the job of the
// same index crashed before.
func (j *job) shipStart() {
	if j.asg.Restarts > 0 && !j.orphan {
		j.a.event(j.asg, fmt.Sprintf("%s restarting after a crash (restart %d)", process(j.asg), j.asg.Restarts))
	}
}

// shipRestart ships the event of a system job's exit, whose container the
// agent starts again after wait (see restartInPlace).
func (j *job) shipRestart(code *int, msg string, wait time.Duration) {
	text := process(j.asg) + " exited"
	if code != nil {
		text += fmt.Sprintf(" (exit %d)", *code)
	}
	if msg != "" {
		text += ": " + msg
	}
	text += "; starting it again"
	if wait > 0 {
		text += " in " + wait.String()
	}
	j.a.event(j.asg, text)
}
