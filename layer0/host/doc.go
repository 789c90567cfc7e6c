// Package host is the host agent: it runs the jobs the scheduler assigns to
// one host as Docker containers and tells the cluster how they are doing.
//
// Run registers the host under an etcd lease (reused across quick restarts),
// follows the host's assignments and converges Docker to them: it creates,
// starts and adopts containers (labelled with the cluster, host, job, app,
// release, type and service), checks their readiness, registers healthy
// instances in discovery, publishes each job's state, captures their output
// into per-job ring buffers, and drains, stops and removes containers whose
// assignment is gone. It serves a small HTTP API (see package client) to
// list jobs, stream their logs, kill them and send images to other agents.
//
// A job whose image the engine lacks has it fetched first from another
// host's agent (GET /v1/images/save, `docker save` into `docker load`),
// one host at a time, healthy ones first; jobs needing one image share one
// transfer.
//
// Before creating a container it fetches the job's artifacts with the
// platform token, checks their digests and caches them by digest; it mounts
// them, and with MountGantryd its own executable, read-only. A one-off job
// runs to completion: after an exit with status 0 its outputs are copied out
// of the container and uploaded, then it is down (or crashed), its state is
// recorded and its container removed.
//
// The agent never restarts a crashed job: the job stays crashed, with its
// exit code and last lines of output, until the scheduler replaces it. When
// the agent stops, containers keep running; the next start adopts them, and
// starts again those that exited while no agent ran (a reboot). See
// README.md for the life of a job.
package host
