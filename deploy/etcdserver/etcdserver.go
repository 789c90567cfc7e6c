// Package etcdserver runs an etcd member inside the gantryd process
// (go.etcd.io/etcd/server/v3/embed), for the single-node default, the
// `gantryd etcd` role and tests: the first member of a new cluster, or a
// member added to a running cluster by runtime reconfiguration (see
// Config.InitialCluster).
package etcdserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/gantryhq/gantry/layer0/clustertls"
)

// Config configures Start.
type Config struct {
	// Dir is the data directory; required. It is created if missing.
	Dir string
	// ClientAddr is the host:port clients connect to, e.g.
	// "127.0.0.1:7379"; required. Port 0 is not supported.
	ClientAddr string
	// PeerAddr is the host:port of the peer listener, which the other
	// members reach; required.
	PeerAddr string
	// Name is the member's name; empty means "gantry" (the name of the
	// members made before clusters had several hosts). A member keeps the
	// name its data dir was made with: the name matters only at its first
	// start.
	Name string
	// InitialCluster, for a member added to a running cluster (with
	// MemberAdd, before it starts), lists every member of that cluster as
	// name=peerURL,... including this one; empty starts a new cluster of
	// this member alone. It is read only when Dir holds no member yet.
	InitialCluster string
	// NoFsync disables fsync: faster, for tests only.
	NoFsync bool
	// StartTimeout bounds how long Start waits for the server to be ready;
	// zero means 60 s.
	StartTimeout time.Duration
	// LogFile receives etcd's own logs (warnings and errors); empty means
	// etcd.log in Dir.
	LogFile string
	// TLSDir is a directory of the cluster's certificates (see
	// layer0/clustertls). When set, clients and peers must present a
	// certificate signed by the cluster CA, and nothing is served without
	// TLS. Empty means plain HTTP, for tests that need no security.
	TLSDir string
	// Logger receives a few lifecycle lines; nil discards them.
	Logger *slog.Logger
}

// Validate reports missing fields.
func (c Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("etcdserver: no data dir")
	case c.ClientAddr == "":
		return errors.New("etcdserver: no client address")
	case c.PeerAddr == "":
		return errors.New("etcdserver: no peer address")
	}
	return nil
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	endpoint  string
	tlsDir    string
	closeOnce sync.Once
	log       *slog.Logger
}

// Start starts the server and waits until it serves clients. It stops what
// it started when it fails.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	scheme := "http"
	if cfg.TLSDir != "" {
		scheme = "https"
	}
	curl, err := url.Parse(scheme + "://" + cfg.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("etcd client address %q: %w", cfg.ClientAddr, err)
	}
	purl, err := url.Parse(scheme + "://" + cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("etcd peer address %q: %w", cfg.PeerAddr, err)
	}
	ec := embed.NewConfig()
	ec.Name = cmp.Or(cfg.Name, "gantry")
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{*curl}
	ec.AdvertiseClientUrls = []url.URL{*curl}
	ec.ListenPeerUrls = []url.URL{*purl}
	ec.AdvertisePeerUrls = []url.URL{*purl}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	if cfg.TLSDir != "" {
		p := clustertls.PathsIn(cfg.TLSDir)
		info := transport.TLSInfo{
			CertFile:       p.HostCert,
			KeyFile:        p.HostKey,
			TrustedCAFile:  p.CACert,
			ClientCertAuth: true,
		}
		ec.ClientTLSInfo, ec.PeerTLSInfo = info, info
	}
	ec.LogLevel = "warn"
	if cfg.LogFile == "" {
		cfg.LogFile = filepath.Join(cfg.Dir, "etcd.log")
	}
	if err := os.MkdirAll(filepath.Dir(cfg.LogFile), 0o700); err != nil {
		return nil, fmt.Errorf("etcd log dir: %w", err)
	}
	ec.LogOutputs = []string{cfg.LogFile}
	ec.UnsafeNoFsync = cfg.NoFsync
	// Keep one hour of history for watchers to resume from.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s on %s: %w", cfg.Dir, cfg.ClientAddr, err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed while starting: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s not ready after %s", cfg.Dir, cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("start embedded etcd: %w", ctx.Err())
	}
	cfg.Logger.Info("embedded etcd ready", "dir", cfg.Dir, "client_url", curl.String())
	return &Server{etcd: e, endpoint: curl.String(), tlsDir: cfg.TLSDir, log: cfg.Logger}, nil
}

// Run starts the server (see Start), serves until ctx is done or the
// server fails, and stops it: the `gantryd etcd` role. It returns nil when
// ctx ends.
func Run(ctx context.Context, cfg Config) error {
	srv, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	select {
	case <-ctx.Done():
		return nil
	case err := <-srv.Err():
		return fmt.Errorf("embedded etcd: %w", err)
	}
}

// Endpoint returns the client URL, e.g. "https://127.0.0.1:7379".
func (s *Server) Endpoint() string { return s.endpoint }

// Err returns a channel that receives a fatal server error.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Client returns a new client of the server, with the host certificate of
// the server's TLS directory when it has one; the caller closes it.
func (s *Server) Client() (*clientv3.Client, error) {
	cfg := clientv3.Config{Endpoints: []string{s.endpoint}, DialTimeout: 5 * time.Second}
	if s.tlsDir != "" {
		tc, err := clustertls.ClientConfig(s.tlsDir)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded etcd at %s: %w", s.endpoint, err)
	}
	return c, nil
}

// Close stops the server. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.etcd.Close()
		s.log.Info("embedded etcd stopped")
	})
}
