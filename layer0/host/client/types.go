package client

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Job is one job on a host, as GET /v1/jobs lists it: its state plus what
// the agent runs.
type Job struct {
	keyspace.JobState
	// Image is the image reference the job runs.
	Image string `json:"image"`
	// Service is the discovery service of the job; empty when none.
	Service string `json:"service,omitempty"`
	// Index is the job's number within its formation (web.1, web.2, ...).
	Index int `json:"index,omitempty"`
	// Stats is the job's resource use at the agent's last reading; nil
	// until the first reading of a running job, and for a job that is not
	// running.
	Stats *Stats `json:"stats,omitempty"`
}

// Usage is the host's own resource use, as GET /v1/usage reports it.
type Usage struct {
	// At is when the figures were read.
	At time.Time `json:"at"`
	// CPU is the cores busy on average over the agent's last interval;
	// Cores is how many the host has.
	CPU   float64 `json:"cpu"`
	Cores int     `json:"cores"`
	// MemoryUsed and MemoryTotal are in bytes; used is what is not
	// available to new processes.
	MemoryUsed  uint64 `json:"memory_used"`
	MemoryTotal uint64 `json:"memory_total"`
	// Disks are the file systems of the agent's state and of Docker's
	// images and volumes.
	Disks []Disk `json:"disks"`
}

// Disk is the use of one file system, in bytes.
type Disk struct {
	// Path is a directory on it: the agent's state dir or Docker's root.
	Path  string `json:"path"`
	Used  uint64 `json:"used"`
	Total uint64 `json:"total"`
}

// DiskWarnFraction is the part of a disk in use above which the agent
// warns in its log.
const DiskWarnFraction = 0.85

// Stats is a job's resource use, read by the host agent from the
// container's cgroups.
type Stats struct {
	// At is when the figures were read.
	At time.Time `json:"at"`
	// CPU is the cores used on average over the interval before At
	// (1.5 = one and a half cores); zero at the first reading.
	CPU float64 `json:"cpu"`
	// CPUSeconds is the CPU time used since the container started.
	CPUSeconds float64 `json:"cpu_seconds"`
	// MemoryRSS, MemoryCache and MemoryLimit are in bytes; a zero limit
	// means none.
	MemoryRSS   uint64 `json:"memory_rss"`
	MemoryCache uint64 `json:"memory_cache"`
	MemoryLimit uint64 `json:"memory_limit,omitempty"`
	// NetRxBytes, NetTxBytes, DiskReadBytes and DiskWriteBytes count bytes
	// since the container started.
	NetRxBytes     uint64 `json:"net_rx_bytes"`
	NetTxBytes     uint64 `json:"net_tx_bytes"`
	DiskReadBytes  uint64 `json:"disk_read_bytes"`
	DiskWriteBytes uint64 `json:"disk_write_bytes"`
	// Pids is the number of processes and threads.
	Pids uint64 `json:"pids"`
	// OOMKills counts processes of the container the kernel's OOM killer
	// ended.
	OOMKills uint64 `json:"oom_kills"`
}

// Log streams.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
)

// LogLine is one line of a job's output, as GET /v1/jobs/{id}/log streams
// it (one JSON object per line).
type LogLine struct {
	// Time is when Docker received the line.
	Time time.Time `json:"time"`
	// Stream is StreamStdout or StreamStderr.
	Stream string `json:"stream"`
	// Text is the line without its newline.
	Text string `json:"text"`
}

// Sentinel errors; errors.Is matches an *Error against them by code.
var (
	ErrBadRequest       = errors.New("bad request")
	ErrUnauthorized     = errors.New("unauthorized")
	ErrNotFound         = errors.New("not found")
	ErrJobNotFound      = errors.New("job not found")
	ErrImageNotFound    = errors.New("image not found")
	ErrMethodNotAllowed = errors.New("method not allowed")
	ErrConflict         = errors.New("conflict")
	ErrInternal         = errors.New("internal error")
	ErrUnavailable      = errors.New("unavailable")
)

// codes is the one table between error codes, HTTP statuses and sentinels,
// used by the server to answer and by the client to decode.
var codes = []struct {
	code   string
	status int
	err    error
}{
	{"bad_request", http.StatusBadRequest, ErrBadRequest},
	{"unauthorized", http.StatusUnauthorized, ErrUnauthorized},
	{"not_found", http.StatusNotFound, ErrNotFound},
	{"job_not_found", http.StatusNotFound, ErrJobNotFound},
	{"image_not_found", http.StatusNotFound, ErrImageNotFound},
	{"method_not_allowed", http.StatusMethodNotAllowed, ErrMethodNotAllowed},
	{"conflict", http.StatusConflict, ErrConflict},
	{"internal", http.StatusInternalServerError, ErrInternal},
	{"unavailable", http.StatusServiceUnavailable, ErrUnavailable},
}

// Error is an error answer of the API:
// {"error": {"code": "job_not_found", "message": "..."}}.
type Error struct {
	// Status is the HTTP status of the answer.
	Status int `json:"-"`
	// Code is the machine-readable error code.
	Code string `json:"code"`
	// Message is for humans.
	Message string `json:"message"`
}

// NewError returns the API error for one of the sentinel errors above, with
// the code and status the table assigns to it. An unknown sentinel gives an
// internal error.
func NewError(sentinel error, format string, args ...any) *Error {
	for _, c := range codes {
		if c.err == sentinel {
			return &Error{Status: c.status, Code: c.code, Message: fmt.Sprintf(format, args...)}
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	return fmt.Sprintf("host api: %s (%d %s)", e.Message, e.Status, e.Code)
}

// Unwrap returns the sentinel error of the code, or nil for an unknown code.
func (e *Error) Unwrap() error {
	for _, c := range codes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// ErrorBody is the JSON shape of an error answer.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// GCRequest is the body of POST /v1/gc: what the controller knows and the
// agent does not. The agent removes only resources labelled with its
// cluster (images: only the repositories named here).
type GCRequest struct {
	// Apps are the apps that exist, as listed at ListedAt. The cluster's
	// volumes of other apps that were created before ListedAt (less a
	// minute of clock skew) and that no container uses are removed: they
	// belong to deleted apps, whether the host was up when the app was
	// deleted or not.
	Apps     []string  `json:"apps"`
	ListedAt time.Time `json:"listed_at"`
	// ImageRepos are the repositories of the platform's own images (the
	// stack and builder images, e.g. "gantry/stack"); KeepImages are the
	// references still needed (current versions, images of releases).
	// Every other tag of those repositories that no container uses is
	// removed. Empty ImageRepos removes no image.
	ImageRepos []string `json:"image_repos,omitempty"`
	KeepImages []string `json:"keep_images,omitempty"`
}

// GCResult is the answer to POST /v1/gc: what the agent removed.
type GCResult struct {
	// Containers are the IDs of exited containers of the cluster on this
	// host that no job of the agent owns any more.
	Containers []string `json:"containers"`
	// Volumes are the Docker names of the removed volumes.
	Volumes []string `json:"volumes"`
	// Images are the removed image references.
	Images []string `json:"images"`
	// Artifacts is how many cached artifacts (slugs, build inputs) that
	// no current job uses were deleted; the next job that needs one
	// downloads it again.
	Artifacts int `json:"artifacts"`
}
