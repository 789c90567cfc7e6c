package host

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"github.com/docker/docker/client"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
)

// Defaults applied by Run to zero Config fields and to zero JobSpec fields.
const (
	DefaultAdvertiseAddr = "127.0.0.1"
	DefaultLeaseTTL      = 10 * time.Second
	DefaultDrainDelay    = 2 * time.Second
	DefaultLogLines      = 1000
	DefaultStopTimeout   = 30 * time.Second
	DefaultMemory        = 512 << 20
	DefaultPIDs          = 1024
	DefaultCheckInterval = time.Second
	DefaultCheckTimeout  = 2 * time.Second
	// DefaultStatsInterval is Config.StatsInterval when it is zero.
	DefaultStatsInterval = 10 * time.Second
	// DefaultArtifactCacheSize is Config.ArtifactCacheSize when it is zero.
	DefaultArtifactCacheSize = 4 << 30
)

// ErrConfig is wrapped by the errors of Config.Validate.
var ErrConfig = errors.New("invalid host agent config")

// Config configures Run.
type Config struct {
	// ID is the host ID, unique in the cluster and stable across restarts
	// (it names the host's etcd keys and labels its containers); required.
	ID string
	// Cluster is the cluster ID (see keyspace.New); required.
	Cluster string
	// Etcd is the cluster's etcd client; required. Run does not close it.
	Etcd *clientv3.Client
	// Docker is the Docker Engine client (github.com/docker/docker/client),
	// created with client.WithAPIVersionNegotiation; required. Run does not
	// close it.
	Docker *client.Client
	// AdvertiseAddr is the IP address job ports are published on and
	// advertised at; zero means "127.0.0.1".
	AdvertiseAddr string
	// APIAddr is the listen address of the agent's HTTP API, e.g.
	// "127.0.0.1:7071"; required. Port 0 picks a free port.
	APIAddr string
	// APIToken is the bearer token the HTTP API requires; required. It is
	// also the platform token the agent presents (Authorization: Bearer)
	// when it downloads a job's artifacts and uploads its outputs: the
	// controller knows it as its HostToken.
	APIToken string
	// StateDir is the directory where the agent keeps its lease ID between
	// restarts, the artifact cache (StateDir/artifacts) and the final
	// states of finished one-off jobs (StateDir/finished); required. It is
	// created (mode 0700) when missing.
	StateDir string
	// ArtifactCacheSize bounds, in bytes, the artifacts cached on disk.
	// Above it, the least recently used artifacts no current job needs are
	// deleted after each download; artifacts in use are kept even when
	// they alone exceed it, and one larger than it is refused. Zero means
	// DefaultArtifactCacheSize (4 GiB).
	ArtifactCacheSize int64
	// GantrydPath is the executable that a job with MountGantryd gets,
	// read-only, at /usr/local/bin/gantryd: a static gantryd. Empty means
	// the running executable (os.Executable), which is gantryd itself when
	// the agent runs as `gantryd host` or `gantryd up`.
	GantrydPath string
	// CPU is the capacity offered to jobs in millicores; zero means the
	// engine's CPU count times 1000.
	CPU int64
	// Memory is the capacity offered to jobs in bytes; zero means the
	// engine's total memory.
	Memory int64
	// Tags are free-form host labels that job constraints match on; nil
	// means none.
	Tags map[string]string
	// LeaseTTL is the TTL of the host lease; the host counts as lost this
	// long after its last heartbeat. Zero means 10 s.
	LeaseTTL time.Duration
	// DrainDelay is the wait between deregistering a job from discovery and
	// sending it SIGTERM; zero means 2 s.
	DrainDelay time.Duration
	// LogLines is how many lines of output the agent keeps per job; zero
	// means 1000.
	LogLines int
	// LogURL is the base URL of the log aggregator this host's roles ship
	// to (e.g. "http://127.0.0.1:7072"), published in the host record so
	// that log reads find the lines of this host's jobs; empty publishes
	// none. The agent itself ships through Logs.
	LogURL string
	// Logs receives the jobs' output and the agent's events about them
	// (crashes, restarts) for the apps' logs; Run does not close it. Nil
	// ships nothing.
	Logs LogSink
	// StatsInterval is how often the agent reads each running job's
	// resource use from its cgroups (see GET /v1/jobs and /metrics); zero
	// means 10 s.
	StatsInterval time.Duration
	// SystemVars are this host's values of the placeholders a system
	// job's command and binds may name (SystemVarData, SystemVarAddr,
	// SystemVarEtcd): the platform's system apps have one template for
	// every host of the cluster. Nil means none: a system job that names
	// one crashes, saying which.
	SystemVars map[string]string
	// Version is the gantryd version advertised in the host record; empty
	// is allowed.
	Version string
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
}

// Validate reports missing required fields and values out of range.
func (c Config) Validate() error {
	var errs []error
	if c.ID == "" || len(c.ID) > 63 || !validLabelValue(c.ID) {
		errs = append(errs, errors.New("ID is required: letters, digits, '.', '_' and '-', at most 63"))
	}
	if _, err := keyspace.New(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if c.Etcd == nil {
		errs = append(errs, errors.New("an etcd client (Etcd) is required"))
	}
	if c.Docker == nil {
		errs = append(errs, errors.New("a Docker client (Docker) is required"))
	}
	if c.AdvertiseAddr != "" && net.ParseIP(c.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("AdvertiseAddr %q is not an IP address", c.AdvertiseAddr))
	}
	if c.APIAddr == "" {
		errs = append(errs, errors.New("APIAddr is required"))
	} else if _, _, err := net.SplitHostPort(c.APIAddr); err != nil {
		errs = append(errs, fmt.Errorf("APIAddr: %w", err))
	}
	if c.APIToken == "" {
		errs = append(errs, errors.New("APIToken is required"))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("StateDir is required"))
	}
	if c.ArtifactCacheSize < 0 {
		errs = append(errs, errors.New("ArtifactCacheSize must not be negative"))
	}
	if c.GantrydPath != "" && !filepath.IsAbs(c.GantrydPath) {
		errs = append(errs, fmt.Errorf("GantrydPath %q is not an absolute path", c.GantrydPath))
	}
	if c.CPU < 0 || c.Memory < 0 {
		errs = append(errs, errors.New("CPU and Memory must not be negative"))
	}
	if c.LeaseTTL < 0 || (c.LeaseTTL > 0 && c.LeaseTTL < 2*time.Second) {
		errs = append(errs, errors.New("LeaseTTL must be zero or at least 2s"))
	}
	if c.DrainDelay < 0 {
		errs = append(errs, errors.New("DrainDelay must not be negative"))
	}
	if c.LogLines < 0 {
		errs = append(errs, errors.New("LogLines must not be negative"))
	}
	if c.LogURL != "" {
		if u, err := url.Parse(c.LogURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("LogURL %q: want a URL like http://127.0.0.1:7072", c.LogURL))
		}
	}
	if c.StatsInterval < 0 || (c.StatsInterval > 0 && c.StatsInterval < 100*time.Millisecond) {
		errs = append(errs, errors.New("StatsInterval must be zero or at least 100ms"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = DefaultAdvertiseAddr
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.DrainDelay == 0 {
		c.DrainDelay = DefaultDrainDelay
	}
	if c.LogLines == 0 {
		c.LogLines = DefaultLogLines
	}
	if c.ArtifactCacheSize == 0 {
		c.ArtifactCacheSize = DefaultArtifactCacheSize
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = DefaultStatsInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// validLabelValue reports whether s is safe in etcd keys, Docker label
// filters and container names.
func validLabelValue(s string) bool {
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return s != ""
}
