package scheduler

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/scheduler/placement"
)

// ErrInvalidConfig is returned by Config.Validate and Run for a config that
// cannot work.
var ErrInvalidConfig = errors.New("invalid scheduler config")

// Defaults of the zero Config fields.
const (
	DefaultTick           = time.Second
	DefaultSessionTTL     = 10 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// Config configures Run.
type Config struct {
	// Cluster is the ID of the cluster to schedule; required.
	Cluster string
	// Etcd is the client of the cluster's etcd; required. Run does not
	// close it.
	Etcd *clientv3.Client
	// ID names this candidate in the election; it is the value of its
	// election key. Required.
	ID string
	// HostGrace is how long a host must be gone before its jobs are
	// placed elsewhere. Zero means 15 s.
	HostGrace time.Duration
	// Backoff is the restart schedule of crashed jobs; zero fields take
	// the defaults of placement.Backoff (3 free restarts, then 1 s doubling
	// up to 5 min, reset after 60 s up).
	Backoff placement.Backoff
	// Tick is how often the leader plans even when nothing changed. Zero
	// means 1 s.
	Tick time.Duration
	// SessionTTL is the TTL of the election lease: a leader that stops
	// refreshing it (a killed process, a lost connection) is replaced after
	// this long. Zero means 10 s; it is rounded up to whole seconds.
	SessionTTL time.Duration
	// RequestTimeout bounds each etcd request. Zero means 5 s.
	RequestTimeout time.Duration
	// Logger receives the plans and leadership changes; nil discards them.
	Logger *slog.Logger
}

// Validate reports missing required fields, an invalid cluster ID and
// negative durations.
func (c Config) Validate() error {
	var errs []error
	if _, err := keyspace.New(c.Cluster); err != nil {
		errs = append(errs, err)
	}
	if c.Etcd == nil {
		errs = append(errs, errors.New("no etcd client"))
	}
	if c.ID == "" {
		errs = append(errs, errors.New("no candidate ID"))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"host grace", c.HostGrace}, {"tick", c.Tick}, {"session TTL", c.SessionTTL}, {"request timeout", c.RequestTimeout}} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("negative %s %s", d.name, d.d))
		}
	}
	if err := c.Backoff.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.HostGrace == 0 {
		c.HostGrace = placement.DefaultHostGrace
	}
	if c.Tick == 0 {
		c.Tick = DefaultTick
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
