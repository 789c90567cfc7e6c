package keyspace

import "time"

// Container labels. Every container Gantry starts carries all of them, so a
// host agent only ever touches the containers of its own cluster.
const (
	LabelCluster = "gantry.cluster"
	LabelJob     = "gantry.job"
	LabelApp     = "gantry.app"
	LabelRelease = "gantry.release"
	LabelType    = "gantry.type"
)

// Labels of the platform's own containers (PostgreSQL, etcd, the host
// agent): LabelSystem names the component, LabelHost the host whose
// gantryd owns the container, so that several hosts sharing one Docker
// Engine each touch only their own. They carry LabelCluster too.
const (
	LabelSystem = "gantry.system"
	LabelHost   = "gantry.host"
)

// Host is the value under Space.Host, written by the host agent under its
// lease: it disappears when the host stops heartbeating.
type Host struct {
	// ID is the host's unique name within the cluster.
	ID string `json:"id"`
	// Addr is the advertised IP address; job ports are published on it.
	Addr string `json:"addr"`
	// APIURL is the base URL of the host agent's HTTP API (jobs, logs).
	APIURL string `json:"api_url"`
	// LogURL is the base URL of the log aggregator the roles of this host
	// ship the apps' log lines to; empty when the host ships none (or its
	// agent predates the field). Log reads ask every host's.
	LogURL string `json:"log_url,omitempty"`
	// CPU is the capacity in millicores (1000 = one core).
	CPU int64 `json:"cpu"`
	// Memory is the capacity in bytes available to jobs.
	Memory int64 `json:"memory"`
	// Tags are free-form labels that job constraints match on.
	Tags map[string]string `json:"tags,omitempty"`
	// Healthy is false while the host cannot run jobs (Docker unreachable);
	// the scheduler places nothing new on an unhealthy host.
	Healthy bool `json:"healthy"`
	// Reason says why the host is unhealthy; empty when healthy.
	Reason string `json:"reason,omitempty"`
	// Version is the gantryd version of the agent.
	Version string `json:"version,omitempty"`
	// StartedAt is when the agent started.
	StartedAt time.Time `json:"started_at"`
}

// HostFlags is the value under Space.HostFlag, written by the controller:
// what an operator asked of one host. A host without the key is neither
// drained nor removed.
type HostFlags struct {
	// Drain makes the host unschedulable: the scheduler places no new job
	// on it and moves its jobs (not one-off jobs, which run to their end)
	// to other hosts, each new job up before the old one stops.
	Drain bool `json:"drain,omitempty"`
	// DrainedAt is when the drain was asked for; zero without Drain.
	DrainedAt time.Time `json:"drained_at,omitzero"`
	// Remove forgets the host while it is not registered (its key under
	// Space.Host is gone): the scheduler deletes its assignments at once,
	// without waiting for the host grace, and places the jobs their
	// formations still want elsewhere. One-off jobs are never placed
	// again: their assignments stay until their owner removes their
	// formation. It has no effect on a registered host.
	Remove bool `json:"remove,omitempty"`
	// RemovedAt is when the removal was asked for; zero without Remove.
	RemovedAt time.Time `json:"removed_at,omitzero"`
}

// HealthCheck says when an instance of a job is ready for traffic.
type HealthCheck struct {
	// Path is the HTTP path to GET; a 2xx or 3xx answer passes. Empty means
	// a plain TCP connect to the job's port.
	Path string `json:"path,omitempty"`
	// Interval between checks; zero means the agent's default (1 s).
	Interval time.Duration `json:"interval,omitempty"`
	// Timeout of one check; zero means the agent's default (2 s).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Socket checks the job's own readiness socket instead of its port
	// (see layer0/readiness): the agent mounts a directory of the job's
	// into its container and GETs Path ("/" when empty) over the socket
	// the process serves there. For jobs that share their port with
	// another job (SO_REUSEPORT, a router's handover), whose port answers
	// for whichever job accepts.
	Socket bool `json:"socket,omitempty"`
}

// Resources are the limits of one job's container.
type Resources struct {
	// Memory limit in bytes; zero means the scheduler's default (512 MiB).
	Memory int64 `json:"memory,omitempty"`
	// CPUShares is the relative CPU weight (Docker cpu-shares); zero means
	// Docker's default (1024).
	CPUShares int64 `json:"cpu_shares,omitempty"`
	// PIDs limit; zero means the agent's default (1024).
	PIDs int64 `json:"pids,omitempty"`
}

// JobSpec is what to run: the template of a formation and the body of an
// assignment.
type JobSpec struct {
	// App, Release and Type identify the formation the job belongs to.
	// Release is the release ID; ReleaseVersion its version (1, 2, ...),
	// used to stop the oldest release's jobs first.
	App            string `json:"app"`
	Release        string `json:"release"`
	ReleaseVersion int    `json:"release_version"`
	Type           string `json:"type"`
	// Image is a reference to an image in the local Docker engine.
	Image string `json:"image"`
	// Cmd is the container command (argv); empty means the image's default.
	Cmd []string `json:"cmd,omitempty"`
	// Entrypoint overrides the image's entrypoint when set.
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Env is the process environment (config vars). The agent adds PORT.
	Env map[string]string `json:"env,omitempty"`
	// Port is the container port the process listens on (the agent sets
	// PORT to it and publishes it on a free host port). Zero means the job
	// listens on nothing: no health check, no discovery.
	Port int `json:"port,omitempty"`
	// Service is the discovery service that healthy instances register
	// under; empty means the job is not discoverable.
	Service string `json:"service,omitempty"`
	// Health is the readiness check; used only when Port is set.
	Health HealthCheck `json:"health"`
	// Resources are the container limits.
	Resources Resources `json:"resources"`
	// StopTimeout is the grace period between SIGTERM and SIGKILL; zero
	// means 30 s.
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	// Constraints are host tags the job requires (all must match).
	Constraints map[string]string `json:"constraints,omitempty"`
	// PreferHost is a soft placement preference: the scheduler places a
	// new job of the formation on this host when the host is eligible
	// (healthy, not drained, its tags satisfy Constraints) and has room,
	// and chooses as usual otherwise. Empty means no preference. Builds
	// use it to run where the app's build cache is.
	PreferHost string `json:"prefer_host,omitempty"`
	// User runs the process as this user (name or uid[:gid]) of the image;
	// empty means the image's default.
	User string `json:"user,omitempty"`
	// Artifacts are files the agent fetches before starting the job.
	Artifacts []Artifact `json:"artifacts,omitempty"`
	// Outputs are files the agent uploads after the job exits with status
	// 0; only one-off jobs have outputs.
	Outputs []Output `json:"outputs,omitempty"`
	// MountGantryd mounts the agent's own gantryd binary read-only at
	// /usr/local/bin/gantryd, for the in-container roles (slugbuilder,
	// slugrunner).
	MountGantryd bool `json:"mount_gantryd,omitempty"`
	// Volumes are named volumes of the host, kept from one job to the next
	// (an app's build cache), mounted read-write.
	Volumes []Volume `json:"volumes,omitempty"`
	// OneOff marks a job that runs to completion (a build, `gantry run`):
	// when it exits it is down (status 0) or crashed, and it is never
	// replaced. Its owner removes its formation when done with it.
	OneOff bool `json:"one_off,omitempty"`
	// Attach, for a one-off job only, makes it an attached job (`gantry
	// run`): its container is created with stdin open and started only
	// once a client has attached through the host agent's API; nil means
	// a job nobody attaches to.
	Attach *Attach `json:"attach,omitempty"`

	// The fields below are the platform's own (the jobs of its system
	// apps, gantry-controller, gantry-router, ...): only the platform
	// sets them, and the controller's API never lets a user set them.

	// System names the platform component the job is (the system app's
	// name); the agent labels its container LabelSystem with it. Empty
	// for the apps' jobs.
	System string `json:"system,omitempty"`
	// HostNetwork runs the job on the host's network: nothing is
	// published, the process listens on Port of the host itself, and its
	// address is the host's advertised address and Port. False gives the
	// job a network of its own with Port published.
	HostNetwork bool `json:"host_network,omitempty"`
	// Binds are host directories mounted into the container (the node's
	// data dir); none for the apps' jobs.
	Binds []Bind `json:"binds,omitempty"`
}

// Bind is a directory of the host mounted into a platform job's container
// (JobSpec.Binds).
type Bind struct {
	// Source is the absolute path on the host.
	Source string `json:"source"`
	// Target is the absolute path in the container.
	Target string `json:"target"`
	// ReadOnly mounts it read-only; false means read-write.
	ReadOnly bool `json:"read_only,omitempty"`
}

// Attach says how a client attaches to a one-off job (JobSpec.Attach).
type Attach struct {
	// TTY gives the job a terminal; without it stdout and stderr stay
	// apart.
	TTY bool `json:"tty,omitempty"`
	// Rows and Cols are the terminal's size at start; zero means the
	// engine's default (TTY only).
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Wait bounds the wait for the client once the container is created;
	// the job then crashes without running. Zero means one minute.
	Wait time.Duration `json:"wait,omitempty"`
}

// Artifact is a blob the host agent fetches (with its platform token),
// verifies, caches on local disk by digest, and mounts read-only into the
// container.
type Artifact struct {
	// URL is where to GET the blob (the controller's blobstore).
	URL string `json:"url"`
	// Digest is "sha256:<hex>"; the fetched bytes must match it.
	Digest string `json:"digest"`
	// Path is the absolute path of the file inside the container.
	Path string `json:"path"`
}

// Volume is a named volume of the host a job runs on. The agent creates it
// on first use, scoped to the cluster and the job's app (two apps never
// share one), and keeps it until the app's volumes are removed: a job on
// another host finds that host's volume, or an empty one.
type Volume struct {
	// Name names the volume within the app: ^[a-z][a-z0-9-]{0,29}$.
	Name string `json:"name"`
	// Path is the absolute path of the mount in the container.
	Path string `json:"path"`
}

// Output is a file the host agent copies out of a one-off job's container
// after it exits with status 0 and uploads (with its platform token).
type Output struct {
	// Path is the absolute path of the file inside the container.
	Path string `json:"path"`
	// URL is where to PUT it (the controller's blobstore).
	URL string `json:"url"`
	// Optional outputs may be missing without failing the job.
	Optional bool `json:"optional,omitempty"`
}

// Formation is the value under Space.Formation, written by the controller:
// the desired number of jobs of one process type of one release.
type Formation struct {
	App      string  `json:"app"`
	Release  string  `json:"release"`
	Type     string  `json:"type"`
	Count    int     `json:"count"`
	Template JobSpec `json:"template"`
	// RestartedAt asks for a rolling restart: the jobs of this formation
	// created before it are replaced, each new job up before an old one
	// stops. Zero means no restart was asked for.
	RestartedAt time.Time `json:"restarted_at,omitzero"`
	// UpdatedAt is when the controller last changed the count or template.
	UpdatedAt time.Time `json:"updated_at"`
	// PerHost asks for one job on every eligible host (healthy, not
	// drained, tags match); Count is ignored.
	PerHost bool `json:"per_host,omitempty"`
}

// Assignment is the value under Space.Assignment, written by the scheduler
// leader: one job placed on one host.
type Assignment struct {
	JobID  string  `json:"job_id"`
	HostID string  `json:"host_id"`
	Spec   JobSpec `json:"spec"`
	// Index numbers the jobs of a formation from 1 (web.1, web.2, ...); a
	// replacement keeps the index of the job it replaces.
	Index int `json:"index"`
	// Restarts counts how many jobs of this index crashed and were
	// replaced since the release arrived or the job was last up a while.
	Restarts int `json:"restarts"`
	// CreatedAt is when the scheduler placed the job.
	CreatedAt time.Time `json:"created_at"`
	// RestartAt is when the scheduler replaces this job: set while the job
	// is crashed and waits for its back-off; zero otherwise. The host agent
	// ignores it (a changed assignment value does not restart a job).
	RestartAt time.Time `json:"restart_at,omitzero"`
	// LastExit is the crash of the job of this index that this job
	// replaced (carried on when a job moves off a lost host); nil when
	// the job replaced no crashed job.
	LastExit *Exit `json:"last_exit,omitempty"`
}

// Exit is how a job ended, as its host reported it; an assignment carries
// the last one of its index across replacements.
type Exit struct {
	// ExitCode is the exit status; nil when the job could not start.
	ExitCode *int `json:"exit_code,omitempty"`
	// Error explains a crash that is not an exit ("image not found").
	Error string `json:"error,omitempty"`
	// LastLines are the last lines of output before the exit.
	LastLines []string `json:"last_lines,omitempty"`
	// At is when the host reported the exit.
	At time.Time `json:"at"`
}

// Job states, in JobState.State. They are defined here only: layer1
// (controller/types) derives its job states from them.
const (
	StateStarting = "starting" // container being created or health check not yet passed
	StateUp       = "up"       // running and healthy (registered in discovery if it has a service)
	StateCrashed  = "crashed"  // exited or could not start; see ExitCode, Error, LastLines
	StateStopping = "stopping" // deregistered, draining, being stopped
	StateDown     = "down"     // stopped on purpose
)

// JobState is the value under Space.Job, written by the host agent under its
// lease.
type JobState struct {
	JobID       string `json:"job_id"`
	HostID      string `json:"host_id"`
	App         string `json:"app"`
	Release     string `json:"release"`
	Type        string `json:"type"`
	State       string `json:"state"`
	ContainerID string `json:"container_id,omitempty"`
	// Addr is the published host:port of the job's port; empty when the
	// job has no port or is not running.
	Addr string `json:"addr,omitempty"`
	// ExitCode is the exit status of the last exit, when there was one.
	ExitCode *int `json:"exit_code,omitempty"`
	// Error explains a crash that is not an exit ("image not found").
	Error string `json:"error,omitempty"`
	// LastLines are the last lines of output when the job crashed.
	LastLines []string `json:"last_lines,omitempty"`
	// StartedAt is when the container started.
	StartedAt time.Time `json:"started_at"`
	// UpdatedAt is when the state last changed.
	UpdatedAt time.Time `json:"updated_at"`
}
