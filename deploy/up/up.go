// Package up runs a whole single-node Gantry in one process: embedded etcd
// (or an external cluster), a private PostgreSQL (or an external server), the
// controller API, the host agent, the scheduler, the router, the git
// receiver and the log aggregator. Every role talks to the others over the
// network (HTTP, etcd), exactly as it does when it runs as its own process
// (the role commands of gantryd), and takes its identity from the data dir
// through package node as they do, so this package only composes them.
package up

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gantryhq/gantry/router"
)

// Config configures Run. Addresses are host:port.
type Config struct {
	// DataDir holds all state (etcd, PostgreSQL, keys, admin.env); required.
	DataDir string
	// APIAddr is the controller API listen address; required.
	APIAddr string
	// HTTPAddr and HTTPSAddr are the router's listen addresses; required.
	HTTPAddr  string
	HTTPSAddr string
	// SSHAddr is the git-over-SSH listen address, reported in git URLs;
	// required.
	SSHAddr string
	// HostAPIAddr is the host agent's API listen address; required.
	HostAPIAddr string
	// LogAddr is the log aggregator's listen address; required. Port 0
	// picks a free port (the aggregator is the node's own: the roles
	// reach it at the address it got).
	LogAddr string
	// LogLines is the log history kept per app, in lines; zero means the
	// aggregator's default (10,000).
	LogLines int
	// EtcdClientAddr and EtcdPeerAddr are the embedded etcd's listen
	// addresses; unused when EtcdEndpoints is set.
	EtcdClientAddr string
	EtcdPeerAddr   string
	// EtcdEndpoints points at an external etcd cluster instead of the
	// embedded one; empty means embedded.
	EtcdEndpoints []string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile are the CA bundle and client
	// certificate for the external cluster's https endpoints; all empty
	// means the node's own cluster certificates (<data>/tls).
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	// DatabaseURL points at an external PostgreSQL instead of the private
	// one; empty means private.
	DatabaseURL string
	// Domain is the app domain: apps are served at <app>.<Domain>.
	Domain string
	// AdvertiseAddr is the IP app ports are published on.
	AdvertiseAddr string
	// DeployTimeout is how long a deployment waits for the new release's
	// jobs to be up before it fails and the old release keeps serving;
	// zero means the controller's default (120 s).
	DeployTimeout time.Duration
	// ACMEEmail turns on automatic certificates (ACME) for the custom
	// routes added without one, with this account contact; empty means
	// off.
	ACMEEmail string
	// ACMEDirectory is the ACME directory URL; empty means Let's
	// Encrypt's production directory.
	ACMEDirectory string
	// ACMECAFile is a PEM CA bundle trusted to reach a private ACME
	// server; empty means the system roots.
	ACMECAFile string
	// SlugsKept is how many of each app's newest releases keep their slugs
	// (and can be rolled back to); zero means the controller's default
	// (10).
	SlugsKept int
	// GCInterval is the period of the garbage collection; zero means the
	// controller's default (1 hour).
	GCInterval time.Duration
	// DiskWarningPercent is the part of a host's disk in use, in percent
	// (1 to 100), past which the controller warns in its log and in the
	// log of gantry-controller; zero means the controller's default (85).
	DiskWarningPercent int
	// AccessLog receives the router's access log, one line per request;
	// nil means none. Unused with Containers (see AccessLogPath).
	AccessLog io.Writer
	// AccessLogPath, with Containers, is where the router's job writes
	// its access log: "-" for its container's output (so its job log,
	// gantry -a gantry-router log), or a file in the data dir, the one
	// host directory the job sees (a relative path is taken from the
	// current directory); empty means none. Unused without Containers.
	AccessLogPath string
	// RouterLimits are the router's client timeouts and connection cap;
	// zero values mean the router's defaults.
	RouterLimits router.Limits
	// Version is gantryd's version.
	Version string
	// Logger receives structured logs; required.
	Logger *slog.Logger
	// Out receives the few human lines ("Gantry is up", how to source
	// admin.env); nil means os.Stdout.
	Out io.Writer

	// Containers runs the platform as containers (etcd, PostgreSQL and
	// the host agent started by Run, the other roles as the jobs of the
	// system apps) instead of in this process; false runs it in this
	// process. It needs no external etcd or PostgreSQL (it runs its own),
	// AccessLogPath instead of AccessLog, and a LogAddr with a port; an
	// ACMECAFile is mounted read-only into the controller's container.
	Containers bool
	// PostgresAddr is the address of the PostgreSQL container (host:port);
	// required with Containers, unused without.
	PostgresAddr string
	// Detach, with Containers, makes Run return once the platform is up,
	// leaving it running (`gantryd down` stops it); false follows the
	// platform's logs until ctx ends, then stops it.
	Detach bool
	// Joining, with Containers, is the first start of a host that joined
	// a cluster (`gantryd join`, which laid out its data dir): it asks for
	// an etcd member before it starts.
	Joining bool
	// LogOut receives the platform containers' output that Run follows;
	// nil means os.Stderr.
	LogOut io.Writer
}

// Validate reports missing or malformed fields.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("no data dir"))
	}
	addrs := map[string]string{"api-addr": c.APIAddr, "http-addr": c.HTTPAddr, "https-addr": c.HTTPSAddr, "ssh-addr": c.SSHAddr, "host-api-addr": c.HostAPIAddr, "log-addr": c.LogAddr}
	if len(c.EtcdEndpoints) == 0 {
		addrs["etcd-client-addr"] = c.EtcdClientAddr
		addrs["etcd-peer-addr"] = c.EtcdPeerAddr
	}
	for name, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want host:port", name, a))
		}
	}
	if c.Domain == "" {
		errs = append(errs, errors.New("no domain"))
	}
	if c.SlugsKept < 0 {
		errs = append(errs, fmt.Errorf("--slugs-kept %d is negative", c.SlugsKept))
	}
	if c.GCInterval < 0 {
		errs = append(errs, fmt.Errorf("--gc-interval %s is negative", c.GCInterval))
	}
	if c.DiskWarningPercent < 0 || c.DiskWarningPercent > 100 {
		errs = append(errs, fmt.Errorf("--disk-warning-percent %d: want 1 to 100", c.DiskWarningPercent))
	}
	if net.ParseIP(c.AdvertiseAddr) == nil {
		errs = append(errs, fmt.Errorf("--advertise %q: want an IP address", c.AdvertiseAddr))
	}
	if c.Logger == nil {
		errs = append(errs, errors.New("no logger"))
	}
	if c.Containers {
		errs = append(errs, c.validateContainers()...)
	} else {
		if c.Detach {
			errs = append(errs, errors.New("--detach and --in-process: only the platform as containers runs detached"))
		}
		if c.AccessLogPath != "" {
			errs = append(errs, errors.New("--in-process: the access log is a writer, not a path"))
		}
	}
	return errors.Join(errs...)
}

// validateContainers reports what the platform as containers does not
// take.
func (c Config) validateContainers() []error {
	var errs []error
	if len(c.EtcdEndpoints) > 0 || c.DatabaseURL != "" {
		errs = append(errs, errors.New("the platform as containers runs its own etcd and PostgreSQL: --etcd and --database-url need --in-process for now"))
	}
	if c.AccessLog != nil {
		errs = append(errs, errors.New("as containers the router's job opens its access log itself: give its path, not a writer"))
	}
	if port(c.LogAddr) == 0 {
		errs = append(errs, fmt.Errorf("--log-addr %q needs a port (port 0 only with --in-process)", c.LogAddr))
	}
	if _, _, err := net.SplitHostPort(c.PostgresAddr); err != nil || port(c.PostgresAddr) == 0 {
		errs = append(errs, fmt.Errorf("--postgres-addr %q: want host:port", c.PostgresAddr))
	}
	return errs
}

// publicURL turns a listen address into a URL a local client can use:
// an unspecified host becomes "localhost".
func publicURL(scheme, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	if host == "127.0.0.1" || host == "::1" {
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// sshBaseURL is the base of the apps' git URLs.
func sshBaseURL(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "ssh://git@" + net.JoinHostPort(host, port)
}

// stopTimeout bounds how long shutdown waits for a dependency to stop.
const stopTimeout = 30 * time.Second

// containerPaths returns cfg with its file paths made ready for the
// platform's containers, which see host paths at the same paths: the
// ACME CA file absolute (the controller's container mounts it), and the
// access log file absolute and inside dataDir (an absolute path, the only
// host directory the router's job sees). It fails on a CA file that is
// not a readable regular file, and on an access log outside dataDir.
func containerPaths(cfg Config, dataDir string) (Config, error) {
	if cfg.ACMECAFile != "" {
		abs, err := filepath.Abs(cfg.ACMECAFile)
		if err != nil {
			return cfg, fmt.Errorf("--acme-ca-file: %w", err)
		}
		f, err := os.Open(abs)
		if err != nil {
			return cfg, fmt.Errorf("--acme-ca-file: %w", err)
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return cfg, fmt.Errorf("--acme-ca-file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return cfg, fmt.Errorf("--acme-ca-file %s: not a regular file", abs)
		}
		cfg.ACMECAFile = abs
	}
	if cfg.AccessLogPath != "" && cfg.AccessLogPath != "-" {
		abs, err := filepath.Abs(cfg.AccessLogPath)
		if err != nil {
			return cfg, fmt.Errorf("--access-log: %w", err)
		}
		rel, err := filepath.Rel(dataDir, abs)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return cfg, fmt.Errorf("--access-log %s: as containers the access log is - (the router job's output) or a file in the data dir %s, the one host directory the router's container sees", abs, dataDir)
		}
		cfg.AccessLogPath = abs
	}
	return cfg, nil
}
