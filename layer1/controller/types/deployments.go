package types

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ErrDeploymentNotFound is the answer for an unknown deployment of an app.
var ErrDeploymentNotFound = &Error{Status: http.StatusNotFound, Code: "deployment_not_found", Message: "no such deployment"}

// Deployment states, in Deployment.State and in the store's
// store.Deployment.Status (see docs/ARCHITECTURE.md, "Deployments"). They
// are defined here only.
const (
	// DeployPending: waits for the app's active deployment to end.
	DeployPending = "pending"
	// DeployRunning: the new release's jobs are starting and the old
	// release's stopping, step by step.
	DeployRunning = "running"
	// DeployRollingBack: the new release failed; the old release is being
	// brought back to its full counts before the new jobs stop.
	DeployRollingBack = "rolling_back"
	// DeployComplete: the new release is current and its jobs are up.
	DeployComplete = "complete"
	// DeployFailed: the new release did not come up and the app had no
	// running release to fall back to.
	DeployFailed = "failed"
	// DeployRolledBack: the new release did not come up; its jobs were
	// stopped and the old release runs at full strength.
	DeployRolledBack = "rolled_back"
	// DeploySuperseded: a pending deployment that a newer release replaced
	// before it started.
	DeploySuperseded = "superseded"
)

// Deploy strategies, in DeploySettings.Strategy and Deployment.Strategy.
const (
	// StrategyOneByOne replaces the jobs of each process type one at a
	// time: a new job starts, and once it is up an old one stops.
	StrategyOneByOne = "one-by-one"
	// StrategyAllAtOnce starts all the new jobs, and stops all the old
	// ones once the new ones are up.
	StrategyAllAtOnce = "all-at-once"
)

// DeployStrategies are the strategies, the default first.
var DeployStrategies = []string{StrategyOneByOne, StrategyAllAtOnce}

// Deployment is the move of an app from one release to the next.
type Deployment struct {
	ID  string `json:"id"`
	App string `json:"app"`
	// OldRelease is the version the deployment moves from: the current
	// release when it started; 0 when there was none, or while pending.
	OldRelease int `json:"old_release"`
	// NewRelease is the version being deployed.
	NewRelease int    `json:"new_release"`
	Strategy   string `json:"strategy"`
	// State is one of the Deploy* states.
	State string `json:"state"`
	// Timeout is how long, in seconds, a new job has to come up.
	Timeout int `json:"timeout"`
	// Processes is the progress of each process type of the new release,
	// by type.
	Processes []DeploymentProcess `json:"processes"`
	// Reason says why a deployment failed or rolled back; FailedJob is the
	// job that failed and LastLines its last lines of output, when known.
	Reason    string   `json:"reason,omitempty"`
	FailedJob string   `json:"failed_job,omitempty"`
	LastLines []string `json:"last_lines,omitempty"`
	// ConfigRestored is true when the deployment rolled back and the
	// app's config vars went back to those of the release that keeps
	// running: the config change that made the new release was undone.
	ConfigRestored bool      `json:"config_restored,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	// StartedAt is when it stopped being pending; FinishedAt when it
	// ended. Absent until then.
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Ended reports whether the deployment is over (complete, failed, rolled
// back or superseded).
func (d Deployment) Ended() bool {
	switch d.State {
	case DeployComplete, DeployFailed, DeployRolledBack, DeploySuperseded:
		return true
	}
	return false
}

// DeploymentProcess is the progress of one process type of a deployment.
type DeploymentProcess struct {
	Type string `json:"type"`
	// Up is how many of the new release's jobs of the type are up, Want
	// its count.
	Up   int `json:"up"`
	Want int `json:"want"`
}

// DeploySettings are how an app's releases are deployed
// (GET /v1/apps/{app}/deploy).
type DeploySettings struct {
	App      string `json:"app"`
	Strategy string `json:"strategy"`
	// Timeout is how long, in seconds, a new job has to come up.
	Timeout int `json:"timeout"`
	// TimeoutDefault is true when Timeout is the controller's default
	// (the app sets none).
	TimeoutDefault bool `json:"timeout_default"`
}

// DeploySettingsRequest is the body of PATCH /v1/apps/{app}/deploy; the
// fields left out keep their value.
type DeploySettingsRequest struct {
	// Strategy is StrategyOneByOne or StrategyAllAtOnce.
	Strategy *string `json:"strategy,omitempty"`
	// Timeout is in seconds, 1 to 3600; 0 goes back to the controller's
	// default.
	Timeout *int `json:"timeout,omitempty"`
}

// DeploymentEvent kinds, the event field of the server-sent events of
// GET /v1/apps/{app}/deployments/{id}/events.
const (
	// DeploymentEventProgress carries the deployment after a change.
	DeploymentEventProgress = "progress"
	// DeploymentEventEnd is the last event: the deployment has ended.
	DeploymentEventEnd = "end"
)

// DeploymentHeader names the deployment that an answer's new release
// started (or queued), on the answers of the endpoints that create
// releases.
const DeploymentHeader = "Gantry-Deployment"

// Progress describes how many new jobs of each scaled-up process type are
// up, "web 2/3, worker 1/1"; "no process is scaled up" when none is.
func (d Deployment) Progress() string {
	var parts []string
	for _, p := range d.Processes {
		if p.Want > 0 {
			parts = append(parts, fmt.Sprintf("%s %d/%d", p.Type, min(p.Up, p.Want), p.Want))
		}
	}
	if len(parts) == 0 {
		return "no process is scaled up"
	}
	return strings.Join(parts, ", ")
}

// Status is the line that shows a deployment to users, as `git push`,
// `gantry deploy` and `gantry env set` print it after "-----> " (or
// " !     " for a failure): "Deploying v7 (one-by-one): web 2/3",
// "Deployed v7", "Deploy of v7 failed: ...".
func (d Deployment) Status() string {
	switch d.State {
	case DeployPending:
		return fmt.Sprintf("v%d waits for the running deployment to end", d.NewRelease)
	case DeployRunning:
		return fmt.Sprintf("Deploying v%d (%s): %s", d.NewRelease, d.Strategy, d.Progress())
	case DeployRollingBack:
		return fmt.Sprintf("Deploy of v%d failed, rolling back to v%d: %s", d.NewRelease, d.OldRelease, d.Reason)
	case DeployComplete:
		return fmt.Sprintf("Deployed v%d", d.NewRelease)
	case DeployRolledBack:
		if d.ConfigRestored {
			return fmt.Sprintf("Deploy of v%d failed: %s; v%d keeps running, and the config is v%d's again (the change was undone)",
				d.NewRelease, d.Reason, d.OldRelease, d.OldRelease)
		}
		return fmt.Sprintf("Deploy of v%d failed: %s; v%d keeps running", d.NewRelease, d.Reason, d.OldRelease)
	case DeployFailed:
		return fmt.Sprintf("Deploy of v%d failed: %s", d.NewRelease, d.Reason)
	case DeploySuperseded:
		return fmt.Sprintf("Deploy of v%d was replaced by a newer release before it started", d.NewRelease)
	}
	return fmt.Sprintf("Deploy of v%d is %s", d.NewRelease, d.State)
}

// Failed reports whether the deployment ended without its release coming
// up (failed, rolled back, or superseded).
func (d Deployment) Failed() bool {
	return d.Ended() && d.State != DeployComplete
}
