package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantryhq/gantry/deploy/etcdserver"
	"github.com/gantryhq/gantry/gitreceiver"
	"github.com/gantryhq/gantry/layer0/host"
	"github.com/gantryhq/gantry/layer0/scheduler"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/logaggregator"
	logclient "github.com/gantryhq/gantry/layer1/logaggregator/client"
	"github.com/gantryhq/gantry/router"
)

// The host agent, the router and the controller ship to the log
// aggregator with a Shipper each (see Node.Shipper).
var (
	_ host.LogSink         = (*logclient.Shipper)(nil)
	_ router.AppLogSink    = (*logclient.Shipper)(nil)
	_ controller.EventSink = (*logclient.Shipper)(nil)
)

// The methods below return a role's Config with the fields that the
// node's identity and data dir decide filled in; the caller sets the
// others (addresses, clients, limits).

// Etcd sets the embedded etcd member's data dir (EtcdDir), its TLS dir
// (TLSDir: it serves only clients and peers with a certificate of the
// cluster CA), its name (the host ID) and, for a member added to a
// running cluster, the initial cluster (EtcdInitialClusterFile). Call
// EnsureTLS with its addresses first.
func (n *Node) Etcd(cfg etcdserver.Config) (etcdserver.Config, error) {
	cfg.Dir, cfg.TLSDir, cfg.Name = n.Path(EtcdDir), n.Path(TLSDir), n.HostID
	initial, err := n.EtcdInitialCluster()
	if err != nil {
		return cfg, err
	}
	cfg.InitialCluster = initial
	return cfg, nil
}

// Host sets the host agent's ID, Cluster, APIToken and StateDir
// (HostStateDir).
func (n *Node) Host(cfg host.Config) host.Config {
	cfg.ID, cfg.Cluster, cfg.APIToken, cfg.StateDir = n.HostID, n.Cluster, n.HostToken, n.Path(HostStateDir)
	return cfg
}

// Scheduler sets the scheduler's Cluster, and its ID to the host ID when
// it is empty.
func (n *Node) Scheduler(cfg scheduler.Config) scheduler.Config {
	cfg.Cluster = n.Cluster
	if cfg.ID == "" {
		cfg.ID = n.HostID
	}
	return cfg
}

// Router sets the router's Cluster, MetricsToken and SecretsKey, and its
// ID to the host ID when it is empty.
func (n *Node) Router(cfg router.Config) router.Config {
	cfg.Cluster, cfg.MetricsToken, cfg.SecretsKey = n.Cluster, n.HostToken, n.SecretsKey
	if cfg.ID == "" {
		cfg.ID = n.HostID
	}
	return cfg
}

// Controller sets the controller's Cluster, HostToken, GitHostKey,
// MetricsFile and SecretsKey.
func (n *Node) Controller(cfg controller.Config) controller.Config {
	cfg.Cluster, cfg.HostToken, cfg.GitHostKey = n.Cluster, n.HostToken, n.GitHostKey
	cfg.MetricsFile, cfg.SecretsKey = n.Path(MetricsFile), n.SecretsKey
	return cfg
}

// GitReceiver sets the git receiver's HostKeyFile and RepoDir.
func (n *Node) GitReceiver(cfg gitreceiver.Config) gitreceiver.Config {
	cfg.HostKeyFile, cfg.RepoDir = n.Path(GitHostKeyFile), n.Path(GitReposDir)
	return cfg
}

// LogAggregator sets the log aggregator's DataDir (LogsDir) and Token.
func (n *Node) LogAggregator(cfg logaggregator.Config) logaggregator.Config {
	cfg.DataDir, cfg.Token = n.Path(LogsDir), n.HostToken
	return cfg
}

// Shipper starts a Shipper to the log aggregator at url with the host
// token, for the role named component; the caller closes it.
func (n *Node) Shipper(url, component string, log *slog.Logger) (*logclient.Shipper, error) {
	s, err := logclient.NewShipper(logclient.ShipperConfig{URL: url, Token: n.HostToken, Logger: log.With("shipper", component)})
	if err != nil {
		return nil, fmt.Errorf("%s: log shipper: %w", component, err)
	}
	return s, nil
}

// EnsureAdminEnv writes AdminEnvFile with a new admin token of the
// database at dbURL unless it exists. An existing file keeps its token;
// its GANTRY_URL is brought up to date when the API's URL changed (a
// restore onto another machine, a new address).
func (n *Node) EnsureAdminEnv(ctx context.Context, dbURL, apiURL string) error {
	envFile := n.Path(AdminEnvFile)
	if b, err := os.ReadFile(envFile); err == nil {
		lines := strings.Split(string(b), "\n")
		changed := false
		for i, l := range lines {
			if v, ok := strings.CutPrefix(l, "GANTRY_URL="); ok && v != apiURL {
				lines[i], changed = "GANTRY_URL="+apiURL, true
			}
		}
		if !changed {
			return nil
		}
		return writeFileAtomic(envFile, []byte(strings.Join(lines, "\n")), 0o600)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", envFile, err)
	}
	token, err := controller.CreateAdminToken(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("create admin token: %w", err)
	}
	content := fmt.Sprintf("GANTRY_URL=%s\nGANTRY_TOKEN=%s\n", apiURL, token)
	return writeFileAtomic(envFile, []byte(content), 0o600)
}

// APIURL is the URL at which the node's roles and its CLI reach an API
// listening on addr: an unspecified host becomes 127.0.0.1.
func APIURL(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// ReadAdminEnv reads the API's URL and the admin token from the
// AdminEnvFile of the data dir dir; an error says which is missing.
func ReadAdminEnv(dir string) (url, token string, err error) {
	file := filepath.Join(dir, AdminEnvFile)
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", file, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "GANTRY_URL="); ok {
			url = v
		}
		if v, ok := strings.CutPrefix(line, "GANTRY_TOKEN="); ok {
			token = v
		}
	}
	if url == "" || token == "" {
		return "", "", fmt.Errorf("%s lacks GANTRY_URL or GANTRY_TOKEN", file)
	}
	return url, token, nil
}
