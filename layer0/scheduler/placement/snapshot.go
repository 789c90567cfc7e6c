package placement

import (
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// DefaultMemory is the memory a job is accounted for, and limited to, when
// its spec leaves Resources.Memory at zero.
const DefaultMemory int64 = 512 << 20

// DefaultHostGrace is the host grace used when Snapshot.HostGrace is zero:
// on top of the host lease's TTL (10 s by default), which already rides
// out an agent's restart (it reuses its lease).
const DefaultHostGrace = 5 * time.Second

// ExitLines is how many of a crashed job's last lines of output the
// assignment of its replacement carries in LastExit.
const ExitLines = 5

// Snapshot is everything Place looks at. Place does not modify it.
type Snapshot struct {
	// Now is the time the plan is made at; back-offs and the host grace are
	// measured against it, and new assignments carry it as CreatedAt.
	Now time.Time
	// Seed goes into every new job ID. A leader draws a fresh seed for each
	// plan so that IDs never repeat between plans; for one snapshot the IDs
	// are always the same.
	Seed uint64
	// Hosts are the registered hosts (their keys exist). A host's Memory is
	// its capacity in bytes; a host with no memory takes no jobs.
	Hosts []keyspace.Host
	// GoneSince maps the ID of a host that holds assignments but is not in
	// Hosts to the time it was last seen. A host that is in neither counts
	// as gone for ever, so its jobs move at once.
	GoneSince map[string]time.Time
	// HostGrace is how long a host must be gone before its jobs are placed
	// elsewhere; zero means DefaultHostGrace (15 s).
	HostGrace time.Duration
	// Backoff is the restart schedule of crashed jobs; zero fields take
	// their defaults.
	Backoff Backoff
	// Formations are the desired counts and job templates. The formation
	// of a job is identified by App, Release and Type. A non-zero
	// RestartedAt asks for a rolling restart of the formation (see Place);
	// PerHost asks for one job on each eligible host instead of Count.
	Formations []keyspace.Formation
	// Assignments are the jobs currently placed.
	Assignments []keyspace.Assignment
	// Jobs maps job IDs to the states their hosts report.
	Jobs map[string]keyspace.JobState
	// Flags maps host IDs to what an operator asked of them (see the
	// package documentation):
	// a drained host takes no new job and its jobs move to other hosts;
	// a removed host that is not in Hosts loses its assignments at once.
	// Hosts without flags are missing.
	Flags map[string]keyspace.HostFlags
}

// Reason says why a job is started or stopped.
type Reason string

// Reasons in plans.
const (
	// ReasonNew: the formation wants more jobs than it has.
	ReasonNew Reason = "new"
	// ReasonCrashed: the job crashed and its back-off has passed; it is
	// replaced by a job with the same index.
	ReasonCrashed Reason = "crashed"
	// ReasonHostLost: the job's host has been gone for longer than the
	// host grace; the job is replaced on a live host, or, of a per-host
	// formation, only stops.
	ReasonHostLost Reason = "host-lost"
	// ReasonSurplus: the formation wants fewer jobs than it has (a
	// per-host formation: a second job on a host, or a job on a host whose
	// tags no longer match).
	ReasonSurplus Reason = "surplus"
	// ReasonNoFormation: the job's formation no longer exists.
	ReasonNoFormation Reason = "no-formation"
	// ReasonRestart: the formation is being restarted. A start is the next
	// job of the rolling restart; a stop is a job created before the
	// formation's RestartedAt that is no longer needed (its replacement is
	// up, it crashed, its host is lost, or the count went down).
	ReasonRestart Reason = "restart"
	// ReasonDrain: the job's host is drained. A start is the job that
	// takes over, with the same index, from a job of the drained host; a
	// stop is such a job whose successor is up, or a per-host formation's
	// job of the drained host, which stops at once.
	ReasonDrain Reason = "drain"
	// ReasonHostRemoved: the job's host was removed while it was not
	// registered; its assignment is deleted and the formation's missing
	// job is placed elsewhere as a new one.
	ReasonHostRemoved Reason = "host-removed"
)

// Start is an assignment to create.
type Start struct {
	// Assignment is the full value to write, with a new job ID.
	Assignment keyspace.Assignment
	// Reason is ReasonNew, ReasonCrashed, ReasonHostLost, ReasonRestart
	// or ReasonDrain.
	Reason Reason
	// Replaces is the ID of the job this one replaces; the plan's Stop
	// list deletes that job's assignment. Empty for a new job and for a
	// restart or drain job, whose predecessor stops in a later plan, once
	// the new job is up.
	Replaces string
}

// Stop is an assignment to delete.
type Stop struct {
	// Assignment is the current value; its HostID and JobID name the key.
	Assignment keyspace.Assignment
	// Reason is ReasonSurplus, ReasonNoFormation, ReasonRestart,
	// ReasonDrain, ReasonHostRemoved, or, for a job being replaced,
	// ReasonCrashed or ReasonHostLost (also for a per-host formation's
	// job of a lost host, which is not replaced).
	Reason Reason
}

// Unplaced is a job that should run but fits on no host: no healthy host
// matches its constraints or has room for its memory. For a replacement,
// the old assignment stays until a host can take the new one; for a
// restart job, the rolling restart waits until a host has room for it.
type Unplaced struct {
	App     string
	Release string
	Type    string
	Index   int
	// Reason is what the job was to be started for.
	Reason Reason
	// Replaces is the job a replacement was meant for, or the job of a
	// drained host that keeps running for want of a host to move it to;
	// empty for a new job.
	Replaces string
}

// Plan is the result of Place.
type Plan struct {
	// Start lists the assignments to create, in placement order.
	Start []Start
	// Stop lists the assignments to delete, ordered by app and type, then
	// oldest release first, then newest job first.
	Stop []Stop
	// Unplaced lists the jobs no host can take now.
	Unplaced []Unplaced
	// Update lists assignments to rewrite in place, by job ID: crashed
	// jobs waiting for their back-off, with RestartAt set to when they
	// are replaced, so that readers can tell when that is.
	Update []keyspace.Assignment
	// NextWake is the earliest time after Now at which a back-off, a host
	// grace or the wait for a future RestartedAt ends, so that planning
	// again then changes the plan; zero when nothing is waiting.
	NextWake time.Time
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Start) == 0 && len(p.Stop) == 0 && len(p.Update) == 0 }
