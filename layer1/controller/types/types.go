package types

import (
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Info describes the cluster the controller runs (GET /v1/info).
type Info struct {
	Version     string `json:"version"`
	Cluster     string `json:"cluster"`
	Domain      string `json:"domain"`
	GitURL      string `json:"git_url"`
	RouterHTTP  string `json:"router_http"`
	RouterHTTPS string `json:"router_https"`
	// GitHostKey is the git server's SSH host key in the authorized_keys
	// format ("ssh-ed25519 AAAA..."), which the CLI pins in
	// ~/.ssh/known_hosts; empty when the controller was not told it.
	GitHostKey string `json:"git_host_key,omitempty"`
}

// Health is the body of a healthy GET /healthz.
type Health struct {
	Status string `json:"status"`
}

// App is an application.
type App struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// GitURL is where `git push` deploys the app; empty when the
	// controller knows no git server.
	GitURL string `json:"git_url"`
	// WebURL is where the router serves the app; empty when the controller
	// knows no router.
	WebURL string `json:"web_url"`
	// URLs are every URL of the app's default domain <app>.<domain>: over
	// HTTP, then over HTTPS, for each router listener the controller
	// knows. Empty when it knows none.
	URLs []string `json:"urls,omitempty"`
	// Release is the version of the current release, 0 when there is none.
	Release int `json:"release"`
	// HTTPSOnly redirects plain HTTP requests to HTTPS on every domain of
	// the app that has a certificate (gantry https-only on).
	HTTPSOnly bool `json:"https_only"`
}

// UpdateAppRequest is the body of PATCH /v1/apps/{app}: the settings to
// change; an absent field is left as it is.
type UpdateAppRequest struct {
	// HTTPSOnly turns the app-wide redirect of plain HTTP to HTTPS on or
	// off (see App.HTTPSOnly).
	HTTPSOnly *bool `json:"https_only,omitempty"`
}

// CreateAppRequest is the body of POST /v1/apps.
type CreateAppRequest struct {
	// Name is the app name; empty means a generated one.
	Name string `json:"name,omitempty"`
}

// Key is an SSH public key allowed to push.
type Key struct {
	// Fingerprint is the SHA-256 fingerprint, "SHA256:" and unpadded
	// base64, as ssh-keygen -l prints it.
	Fingerprint string `json:"fingerprint"`
	// Type is the key algorithm, e.g. "ssh-ed25519".
	Type    string `json:"type"`
	Comment string `json:"comment"`
	// Key is the key in authorized_keys format: type, base64 and comment.
	Key       string    `json:"key"`
	CreatedAt time.Time `json:"created_at"`
}

// AddKeyRequest is the body of POST /v1/keys.
type AddKeyRequest struct {
	// Key is one public key in authorized_keys format.
	Key string `json:"key"`
}

// Release is an immutable version of an app: what to run and with which
// config.
type Release struct {
	ID string `json:"id"`
	// App is the app name.
	App       string    `json:"app"`
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Description says what made the release, e.g. "push of commit
	// 1a2b3c4", "env set FOO", "rollback to v3".
	Description string `json:"description"`
	// Image is the container image the release runs.
	Image string `json:"image"`
	// Slug is the digest of the slug ("sha256:..."), empty for releases of
	// a plain image.
	Slug string `json:"slug"`
	// Config is the app's config vars when the release was made.
	Config map[string]string `json:"config"`
	// Processes maps a process type ("web", "worker") to how it runs.
	Processes map[string]Process `json:"processes"`
	// SlugDeleted is true when the release's slug was deleted (it is
	// beyond the newest releases that keep theirs): it can no longer be
	// rolled back to. Only the release list sets it.
	SlugDeleted bool `json:"slug_deleted,omitempty"`
}

// Process is how one process type of a release runs.
type Process struct {
	Command string `json:"command"`
	// HealthPath is the HTTP path of the process's health check, if it
	// has one.
	HealthPath string `json:"health_path,omitempty"`
	// System is set only on the processes of the platform's own apps
	// (gantry-controller, gantry-router, ...), by the platform itself:
	// the API refuses a release that sets it. Nil for the apps' processes.
	System *SystemProcess `json:"system,omitempty"`
}

// SystemProcess is what a process of one of the platform's own apps may
// do beyond an app's process: run on the host's network and mount host
// directories (the node's data dir).
type SystemProcess struct {
	// Port is the port the process listens on, on the host's network; its
	// health check connects there. Zero means it listens on nothing that
	// is checked: its job is up once it runs.
	Port int `json:"port,omitempty"`
	// Binds are the host directories mounted into its container.
	Binds []keyspace.Bind `json:"binds,omitempty"`
	// Ready makes its health check the process's own readiness socket
	// (keyspace.HealthCheck.Socket) rather than Port, which a new job
	// shares with the old one while a deployment replaces it.
	Ready bool `json:"ready,omitempty"`
	// PerHost asks for one job of the process on every eligible host
	// (healthy, not drained, tags match) rather than a count: the count
	// of its formation only says whether it runs (above 0) or not.
	PerHost bool `json:"per_host,omitempty"`
}

// ReleaseRequest is the body of POST /v1/apps/{app}/releases: a release of
// an image present in the hosts' Docker engines. The release takes the
// app's current config vars.
type ReleaseRequest struct {
	// Image is a Docker image reference, e.g. "demo:v2".
	Image string `json:"image"`
	// Processes maps a process type to its command and health check. The
	// command is split into argv with POSIX shell quoting rules and run
	// without a shell.
	Processes map[string]Process `json:"processes"`
	// Description says what made the release; empty means "image <Image>".
	Description string `json:"description,omitempty"`
}

// RollbackRequest is the body of POST /v1/apps/{app}/rollback; the body
// may be empty.
type RollbackRequest struct {
	// Version is the release to copy; 0 means the newest release older
	// than the current one that was ever current.
	Version int `json:"version,omitempty"`
}

// Formation is the desired number of jobs of each process type of an
// app's release (GET and PUT /v1/apps/{app}/formation).
type Formation struct {
	// App is the app name.
	App string `json:"app"`
	// Release is the version of the release the counts apply to: the
	// current release, or the one being deployed while a deploy runs.
	Release int `json:"release"`
	// Processes maps every process type of the release to its count.
	Processes map[string]int `json:"processes"`
	// PerHost lists, sorted, the process types that run one job on every
	// eligible host (SystemProcess.PerHost) rather than their count: for
	// them a count above 0 only says that they run.
	PerHost []string `json:"per_host,omitempty"`
	// UpdatedAt is when a count last changed.
	UpdatedAt time.Time `json:"updated_at"`
}

// RestartRequest is the body of POST /v1/apps/{app}/restart.
type RestartRequest struct {
	// Type is the process type to restart; empty restarts every type.
	Type string `json:"type,omitempty"`
}

// Job states, in Job.State: a job placed on a host that has not reported
// it yet is pending; the others are the states the host agents report,
// defined by layer0 (keyspace.JobState.State).
const (
	JobPending  = "pending"              // placed on a host that has not reported it yet
	JobStarting = keyspace.StateStarting // being created, or its health check has not passed yet
	JobUp       = keyspace.StateUp       // running and healthy
	JobCrashed  = keyspace.StateCrashed  // exited or could not start; see ExitCode, Error, LastLines
	JobStopping = keyspace.StateStopping // draining and being stopped
	JobDown     = keyspace.StateDown     // stopped on purpose
)

// Job is one running instance of a process type of an app.
type Job struct {
	// ID is the job ID, "<app>.<type>.<index>.<hex>".
	ID  string `json:"id"`
	App string `json:"app"`
	// Release is the version of the release the job runs.
	Release int    `json:"release"`
	Type    string `json:"type"`
	// Index numbers the jobs of a process type from 1 (web.1, web.2).
	Index int `json:"index"`
	// Host is the ID of the host the job is placed on.
	Host string `json:"host"`
	// State is one of the Job* states.
	State string `json:"state"`
	// Addr is the published host:port of the job's port, when it has one
	// and runs.
	Addr string `json:"addr,omitempty"`
	// StartedAt is when the job's container started; absent before.
	StartedAt time.Time `json:"started_at,omitzero"`
	// UpdatedAt is when the state last changed (when the job was placed,
	// for a pending job).
	UpdatedAt time.Time `json:"updated_at"`
	// Restarts counts the crashed jobs of this index replaced in a row.
	Restarts int `json:"restarts"`
	// ExitCode is the exit status of the last exit, when there was one.
	ExitCode *int `json:"exit_code,omitempty"`
	// Error explains a crash that is not an exit, e.g. a missing image.
	Error string `json:"error,omitempty"`
	// LastLines are the last lines of output of a crashed job.
	LastLines []string `json:"last_lines,omitempty"`
	// OneOff marks a job that runs once and is never replaced: a build
	// (type "build", release 0) or a one-off process.
	OneOff bool `json:"one_off,omitempty"`
	// RestartAt is when the scheduler replaces this crashed job, at the
	// end of its back-off; absent when no replacement is waiting.
	RestartAt time.Time `json:"restart_at,omitzero"`
	// LastExit is the latest exit of a job of this index: this job's own
	// when it crashed, else that of the crashed job it replaced; absent
	// when there was none since the release's first job of the index.
	LastExit *JobExit `json:"last_exit,omitempty"`
	// Usage is the job's resource use as its host last read it; absent
	// for a job that does not run and when its host did not answer.
	Usage *JobUsage `json:"usage,omitempty"`
}

// JobUsage is a running job's resource use, read by its host agent from
// the container's cgroups about every 10 s.
type JobUsage struct {
	// At is when the host read it.
	At time.Time `json:"at"`
	// CPU is the cores used on average over the host's last interval
	// (0.5 = half a core).
	CPU float64 `json:"cpu"`
	// MemoryRSS is the anonymous memory, MemoryCache the page cache
	// charged to the job and MemoryLimit its limit, all in bytes.
	MemoryRSS   uint64 `json:"memory_rss"`
	MemoryCache uint64 `json:"memory_cache"`
	MemoryLimit uint64 `json:"memory_limit,omitempty"`
}

// JobExit is how a job ended.
type JobExit struct {
	// ExitCode is the exit status; absent when the job could not start.
	ExitCode *int `json:"exit_code,omitempty"`
	// Error explains a crash that is not an exit, e.g. a missing image.
	Error string `json:"error,omitempty"`
	// At is when the job's host reported the exit.
	At time.Time `json:"at"`
	// LastLines are the last lines of output before the exit.
	LastLines []string `json:"last_lines,omitempty"`
}

// Route sends the requests for a domain to an app's web processes (the
// TLS key is never returned).
type Route struct {
	// Domain is a lower-case host name, or a wildcard "*.example.test".
	Domain string `json:"domain"`
	App    string `json:"app"`
	// Default is true for the route <app>.<domain> that every app with a
	// web process has; it cannot be removed.
	Default bool `json:"default"`
	// HTTPSOnly redirects plain HTTP requests to HTTPS: the route's own
	// setting (the default route has none; see App.HTTPSOnly for the
	// app-wide one).
	HTTPSOnly bool `json:"https_only"`
	// TLS is true when the route has its own certificate.
	TLS bool `json:"tls"`
	// CertNotAfter is when the route's certificate expires; absent without
	// a certificate.
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
	CreatedAt    time.Time `json:"created_at"`
	// CertState is the state of the certificate the platform obtains
	// with ACME: CertPending, CertIssued or CertFailed; absent when it
	// obtains none (ACME is off, the route is a wildcard, or a
	// certificate came with the route).
	CertState string `json:"cert_state,omitempty"`
	// CertError is the ACME server's own description of the last
	// failure; set when CertState is CertFailed.
	CertError string `json:"cert_error,omitempty"`
	// CertRetryAt is when the next attempt starts; set when CertState is
	// CertFailed.
	CertRetryAt time.Time `json:"cert_retry_at,omitzero"`
}

// States of a certificate obtained with ACME, in Route.CertState.
const (
	CertPending = "pending"
	CertIssued  = "issued"
	CertFailed  = "failed"
)

// RouteRequest is the body of POST /v1/apps/{app}/routes.
type RouteRequest struct {
	// Domain is a lower-case host name, or a wildcard "*.example.test".
	Domain string `json:"domain"`
	// HTTPSOnly redirects plain HTTP requests to HTTPS.
	HTTPSOnly bool `json:"https_only"`
	// TLSCert is the PEM certificate chain (leaf first) for the domain;
	// empty means the router's default certificate.
	TLSCert string `json:"tls_cert,omitempty"`
	// TLSKey is the PEM private key of the leaf certificate; set exactly
	// when TLSCert is.
	TLSKey string `json:"tls_key,omitempty"`
}

// Build event kinds, in BuildEvent.Event.
const (
	// BuildOutput events carry one line of build output.
	BuildOutput = "output"
	// BuildDone is the last event; it carries the outcome.
	BuildDone = "done"
)

// Build statuses, in Build.Status.
const (
	BuildSucceeded = "succeeded"
	BuildFailed    = "failed"
)

// BuildEvent is one line of the NDJSON stream that answers
// POST /v1/apps/{app}/builds.
type BuildEvent struct {
	// Event is BuildOutput or BuildDone.
	Event string `json:"event"`
	// Text is the line of output (without its newline) of a BuildOutput
	// event; it may be empty.
	Text string `json:"text,omitempty"`
	// Build is the outcome, in the BuildDone event.
	Build *Build `json:"build,omitempty"`
}

// Build is the outcome of a build: the source built into a slug, released
// and deployed.
type Build struct {
	// ID names the build (and its job, <app>.build.1.<hex>).
	ID  string `json:"id"`
	App string `json:"app"`
	// Commit is the commit that was built, when the request named one.
	Commit string `json:"commit,omitempty"`
	// Status is BuildSucceeded or BuildFailed.
	Status string `json:"status"`
	// Release is the version of the release the build created; 0 when it
	// failed before creating one.
	Release int `json:"release,omitempty"`
	// Host is the ID of the host the build job ran on, which keeps the
	// app's build cache; empty when the job was never placed.
	Host string `json:"host,omitempty"`
	// WebURL is where the router serves the app, when the release has a
	// web process and the controller knows the router.
	WebURL string `json:"web_url,omitempty"`
	// Error says why a failed build failed: code build_failed (the source
	// did not build), deploy_failed (the release did not come up; the
	// previous release keeps running), unavailable or internal.
	Error *Error `json:"error,omitempty"`
}

// AppMetrics is an app's key series, as GET /v1/apps/{app}/metrics
// answers.
type AppMetrics struct {
	App string `json:"app"`
	// Since is the span asked for, e.g. "1h0m0s"; Step is the time
	// between points: "10s" up to an hour, "1m0s" beyond.
	Since  string         `json:"since"`
	Step   string         `json:"step"`
	Series []MetricSeries `json:"series"`
	// Summary adds the series up over the span.
	Summary MetricSummary `json:"summary"`
}

// MetricSummary is an app's traffic over a span, from its series: the
// requests (rate times step), by status class ("2xx"; "other" for
// requests whose client left before an answer), and the latency
// percentiles averaged over the steps, weighted by their requests.
type MetricSummary struct {
	Requests      float64            `json:"requests"`
	StatusClasses map[string]float64 `json:"status_classes"`
	LatencyP50    float64            `json:"latency_p50_seconds"`
	LatencyP95    float64            `json:"latency_p95_seconds"`
	LatencyP99    float64            `json:"latency_p99_seconds"`
}

// MetricStatus returns the name of the series of one status class's
// request rate, e.g. "status_2xx_per_second".
func MetricStatus(class string) string { return "status_" + class + "_per_second" }

// Names of the series of AppMetrics.
const (
	MetricRequests = "requests_per_second"
	MetricErrors   = "errors_5xx_per_second"
	MetricP50      = "latency_p50_seconds"
	MetricP95      = "latency_p95_seconds"
	MetricP99      = "latency_p99_seconds"
	MetricCPU      = "cpu_cores"    // per process type
	MetricMemory   = "memory_bytes" // resident memory, per process type
)

// MetricSeries is one series: Name is one of the Metric* names, Type the
// process type for CPU and memory ("" for figures of the whole app).
type MetricSeries struct {
	Name   string        `json:"name"`
	Type   string        `json:"type"`
	Points []MetricPoint `json:"points"`
}

// MetricPoint is one value at the start of its step; steps without a
// value are left out.
type MetricPoint struct {
	Time  time.Time `json:"t"`
	Value float64   `json:"v"`
}
