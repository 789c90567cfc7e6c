package logaggregator

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Defaults of the Config fields whose zero value means a default.
const (
	// DefaultLines is the history kept per app when Config.Lines is 0.
	DefaultLines = 10000
	// MaxLines is the largest Config.Lines.
	MaxLines = 1000000
	// DefaultMaxBodyBytes bounds one ingest request when
	// Config.MaxBodyBytes is 0.
	DefaultMaxBodyBytes = 64 << 20
	// DefaultIdleTimeout ends an ingest request that sent nothing for this
	// long when Config.IdleTimeout is 0.
	DefaultIdleTimeout = 2 * time.Minute
)

// Config configures the log aggregator.
type Config struct {
	// Addr is the TCP listen address, e.g. "127.0.0.1:7072"; required by
	// Run, ignored by New.
	Addr string
	// DataDir is the directory of the apps' log files (one <app>.ndjson
	// each); required. It is created (mode 0700) when missing.
	DataDir string
	// Token is the bearer token every /v1/ request must present: the
	// platform's host token. Required.
	Token string
	// Lines is the history kept per app, in lines; older lines are
	// dropped. Zero means DefaultLines (10,000); at most MaxLines.
	Lines int
	// MaxBodyBytes bounds the body of one ingest request, in bytes; a
	// shipper starts a new request long before. Zero means
	// DefaultMaxBodyBytes (64 MiB).
	MaxBodyBytes int64
	// IdleTimeout ends an ingest request whose body sent no line for this
	// long. Zero means DefaultIdleTimeout (2 minutes).
	IdleTimeout time.Duration
	// Logger receives the aggregator's logs; nil discards them.
	Logger *slog.Logger
	// ReusePort binds Addr with SO_REUSEPORT (Run), so that a new job of
	// the aggregator can listen on the port of the old one while a
	// deployment replaces it.
	ReusePort bool
	// Ready, when not nil, is called once Run listens: the job's
	// readiness signal.
	Ready func()
}

// Validate reports missing or malformed fields, Addr excepted.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("a data dir (DataDir) is required"))
	}
	if c.Token == "" {
		errs = append(errs, errors.New("a token (Token) is required"))
	}
	if c.Lines < 0 || c.Lines > MaxLines {
		errs = append(errs, fmt.Errorf("lines per app (Lines) %d: want 0 to %d", c.Lines, MaxLines))
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("body limit (MaxBodyBytes) %d is negative", c.MaxBodyBytes))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("idle timeout (IdleTimeout) %s is negative", c.IdleTimeout))
	}
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("listen address (Addr) %q: want host:port", c.Addr))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("log aggregator config: %w", err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Lines == 0 {
		c.Lines = DefaultLines
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
