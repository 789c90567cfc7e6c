package types

// RunType is the process type of one-off jobs started by
// POST /v1/apps/{app}/run: their job IDs are <app>.run.1.<hex>.
const RunType = "run"

// Limits of RunRequest.
const (
	// MaxRunArgs bounds the arguments of a run's command.
	MaxRunArgs = 1024
	// MaxRunCommandBytes bounds the total size of a run's command.
	MaxRunCommandBytes = 64 << 10
	// MaxRunEnv bounds the extra environment variables of a run.
	MaxRunEnv = 256
)

// RunRequest is the body of POST /v1/apps/{app}/run: a one-off job of the
// app's current release, with its config vars.
type RunRequest struct {
	// Command is the argv to run. For a release built from source it runs
	// like a Procfile command, through the shell with the slug's
	// environment: one argument is shell code ("echo $HOME | wc -c"), more
	// are quoted and joined. For an image release it is the container's
	// command (the image's entrypoint stays), without a shell.
	Command []string `json:"command"`
	// Env are variables set for this run only, on top of the release's
	// config vars.
	Env map[string]string `json:"env,omitempty"`
	// Detach runs the job in the background: no terminal, no stdin; the
	// answer is 201 with the RunJob at once. Without it the request must
	// ask to switch to the attach protocol (Connection: Upgrade, Upgrade:
	// gantry-attach/1) and is answered 101 once the job is about to start.
	Detach bool `json:"detach,omitempty"`
	// TTY gives the job a terminal (attached runs only).
	TTY bool `json:"tty,omitempty"`
	// Rows and Cols are the terminal's size at start; zero means the
	// engine's default.
	Rows int `json:"rows,omitempty"`
	Cols int `json:"cols,omitempty"`
}

// RunJob is the answer to a detached POST /v1/apps/{app}/run. The 101
// answer of an attached one names the job in its Gantry-Job header.
type RunJob struct {
	// ID is the job's ID (see GET /v1/apps/{app}/jobs).
	ID string `json:"id"`
	// App is the app name.
	App string `json:"app"`
	// Release is the version of the release the job runs.
	Release int `json:"release"`
	// Host is the ID of the host that runs it.
	Host string `json:"host"`
}
