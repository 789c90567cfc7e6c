package types

import "time"

// GCReport is the answer to POST /v1/gc: what one garbage collection
// deleted. Errors lists the parts that failed; the rest was done, and the
// next collection retries the failed parts.
type GCReport struct {
	StartedAt time.Time `json:"started_at"`
	// Seconds is how long the collection took.
	Seconds float64 `json:"seconds"`
	// Slugs is how many slugs of releases beyond the kept window (see
	// Release.SlugDeleted) were deleted.
	Slugs int `json:"slugs"`
	// Blobs is how many other blobs were deleted: the slugs, sources and
	// build caches of deleted apps, and the leftovers of builds cut off.
	Blobs int `json:"blobs"`
	// LargeObjects is how many orphaned PostgreSQL large objects were
	// unlinked before pg_largeobject was vacuumed.
	LargeObjects int `json:"large_objects"`
	// EtcdRevision is the revision etcd's history was compacted to before
	// its members were defragmented; 0 when that step failed.
	EtcdRevision int64 `json:"etcd_revision"`
	// Hosts are the results of the host agents, one per registered host.
	Hosts []HostGC `json:"hosts"`
	// Errors are the failed parts, each a sentence.
	Errors []string `json:"errors,omitempty"`
}

// HostGC is what one host agent removed.
type HostGC struct {
	Host string `json:"host"`
	// Containers is how many exited containers of the cluster were
	// removed, Volumes how many volumes of deleted apps, Images how many
	// tags of stack and builder images no release uses.
	Containers int `json:"containers"`
	Volumes    int `json:"volumes"`
	Images     int `json:"images"`
	// Artifacts is how many cached slugs and build inputs that no
	// current job uses were deleted.
	Artifacts int `json:"artifacts"`
	// Error says why the host did not answer; empty when it did.
	Error string `json:"error,omitempty"`
}

// Host states, in Host.State.
const (
	// HostUp: the host heartbeats and can run jobs.
	HostUp = "up"
	// HostUnhealthy: the host heartbeats but cannot run jobs (Docker is
	// unreachable); see Host.Reason.
	HostUnhealthy = "unhealthy"
	// HostDraining: the host is drained (gantry host drain) and still
	// holds jobs.
	HostDraining = "draining"
	// HostDrained: the host is drained and holds no job.
	HostDrained = "drained"
	// HostDown: the host does not heartbeat (its lease expired) but still
	// holds jobs or is drained.
	HostDown = "down"
)

// Host is a host of the cluster and its resource use (GET /v1/hosts): a
// host that heartbeats, or one that is down and still holds jobs or is
// drained.
type Host struct {
	ID string `json:"id"`
	// Addr is the host's advertised address; empty for a host that is
	// down (it goes with its heartbeat).
	Addr string `json:"addr"`
	// State is one of the Host* states.
	State string `json:"state"`
	// Healthy is true when the host heartbeats and can run jobs.
	Healthy bool `json:"healthy"`
	// Reason says why the host is unhealthy; empty when healthy.
	Reason string `json:"reason,omitempty"`
	// Drain is true when the host is drained: it takes no new job.
	Drain     bool      `json:"drain"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Jobs is the number of jobs the scheduler placed on the host.
	Jobs int `json:"jobs"`
	// EtcdMember is true when one of the members of the cluster's etcd
	// runs on the host (its name is the host's ID, or its client or peer
	// address is the host's address).
	EtcdMember bool `json:"etcd_member"`
	// LastHeartbeat is when the host's agent last renewed its lease, to
	// the second; nil for a host that is down.
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	// Usage is the host's own use at its agent's last reading; nil when
	// the agent did not answer in time, or the host is down.
	Usage *HostUsage `json:"usage,omitempty"`
}

// HostDrain is the answer of POST /v1/hosts/{host}/drain and
// POST /v1/hosts/{host}/undrain.
type HostDrain struct {
	Host string `json:"host"`
	// Drain is true when the host is drained now.
	Drain bool `json:"drain"`
	// Jobs is how many of the host's jobs move to other hosts (one-off
	// jobs run to their end where they are); zero for an undrain.
	Jobs int `json:"jobs"`
	// Stuck lists the jobs that no other host can take now (no room, or
	// no host matches their constraints): they keep running on the host
	// until one can.
	Stuck []HostJob `json:"stuck"`
}

// HostRemoval is the answer of DELETE /v1/hosts/{host}.
type HostRemoval struct {
	Host string `json:"host"`
	// Jobs is how many jobs the host held when it was removed.
	Jobs int `json:"jobs"`
	// Done is true when the scheduler has taken the host's jobs off it
	// (200); false when it has not yet within the wait (202): it does so
	// when it runs.
	Done bool `json:"done"`
	// EtcdMemberRemoved is true when this request removed the host's etcd
	// member (the member named after the host's ID): the quorum counts the
	// members that remain, and the next host to join takes its place.
	EtcdMemberRemoved bool `json:"etcd_member_removed"`
	// EtcdMembers is how many members the cluster's etcd has after the
	// removal; zero when no member was removed.
	EtcdMembers int `json:"etcd_members,omitempty"`
}

// HostJob is one job of a host.
type HostJob struct {
	Job   string `json:"job"`
	App   string `json:"app"`
	Type  string `json:"type"`
	Index int    `json:"index"`
}

// HostUsage is a host's CPU, memory and disk use.
type HostUsage struct {
	At time.Time `json:"at"`
	// CPU is the cores busy on average; Cores is how many the host has.
	CPU   float64 `json:"cpu"`
	Cores int     `json:"cores"`
	// MemoryUsed and MemoryTotal are in bytes.
	MemoryUsed  uint64 `json:"memory_used"`
	MemoryTotal uint64 `json:"memory_total"`
	// Disks are the file systems of the agent's state dir and of Docker's
	// root.
	Disks []Disk `json:"disks"`
	// DiskWarningPercent is the controller's warning threshold: a disk at
	// or past this part in use, in percent, is flagged, and the controller
	// warns in its log and in the log of gantry-controller. Zero from a
	// controller that does not say: 85.
	DiskWarningPercent int `json:"disk_warning_percent,omitempty"`
}

// Disk is one file system of a host. Used and Total are in bytes.
type Disk struct {
	// Path is a directory on it: the agent's state dir or Docker's root.
	Path  string `json:"path"`
	Used  uint64 `json:"used"`
	Total uint64 `json:"total"`
}
