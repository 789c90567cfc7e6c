package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/node"
	"github.com/gantryhq/gantry/deploy/pgserver"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/layer0/etcdmember"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// Request is a joining host's request.
type Request struct {
	// Addr is the host's advertised address.
	Addr string `json:"addr"`
}

// Bundle is what a joining host gets: the cluster's shared files
// (node.SharedFiles), the database URL and the etcd endpoints.
type Bundle struct {
	Cluster       string            `json:"cluster"`
	Files         map[string][]byte `json:"files"`
	DatabaseURL   string            `json:"database_url"`
	EtcdEndpoints []string          `json:"etcd_endpoints"`
}

// Handler is the controller's JoinFunc for the host of n: it checks the
// join token and answers with the Bundle of n's data dir.
func Handler(n *node.Node, etcd *clientv3.Client, log *slog.Logger) controller.JoinFunc {
	space := keyspace.MustNew(n.Cluster)
	return func(ctx context.Context, secret string, body []byte) ([]byte, error) {
		if err := CheckToken(ctx, etcd, space, secret, time.Now()); err != nil {
			log.Warn("a host's join was refused", "err", err)
			return nil, err
		}
		var req Request
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, types.ErrBadRequest.WithMessage("the join request is not JSON: %v", err)
		}
		if net.ParseIP(req.Addr) == nil {
			return nil, types.ErrInvalid.WithMessage("the joining host's address %q is not an IP address", req.Addr)
		}
		b := Bundle{Cluster: n.Cluster, Files: map[string][]byte{}}
		for _, name := range node.SharedFiles {
			content, err := os.ReadFile(n.Path(name))
			if err != nil {
				return nil, fmt.Errorf("join: read %s: %w", name, err)
			}
			b.Files[name] = content
		}
		dbURL, err := os.ReadFile(n.Path(node.DatabaseURLFile))
		if err != nil {
			return nil, fmt.Errorf("join: read the database URL: %w", err)
		}
		b.DatabaseURL = strings.TrimSpace(string(dbURL))
		if b.EtcdEndpoints, err = etcdmember.ClientURLs(ctx, etcd, ""); err != nil {
			return nil, types.ErrUnavailable.WithMessage("cannot list etcd's members: %v", err)
		}
		log.Info("a host joins the cluster", "addr", req.Addr)
		return json.Marshal(b)
	}
}

// joinTimeout bounds the join request.
const joinTimeout = 30 * time.Second

// JoinConfig configures Join.
type JoinConfig struct {
	// Addr is the host:port of a cluster host's API; required.
	Addr string
	// Token is the join token; required.
	Token string
	// Advertise is the joining host's address; required.
	Advertise string
	// DataDir is the joining host's data dir, new or empty; required.
	DataDir string
	// Logger receives progress; required.
	Logger *slog.Logger
}

// Join asks the cluster host at cfg.Addr, over TLS with the CA the token
// pins, to take this host in, and lays out its data dir with the answer
// (node.WriteJoined). The caller then starts the host (gantryd up).
func Join(ctx context.Context, cfg JoinConfig) error {
	tok, err := ParseToken(cfg.Token)
	if err != nil {
		return err
	}
	if net.ParseIP(cfg.Advertise) == nil {
		return fmt.Errorf("--advertise %q: want the IP address of this host", cfg.Advertise)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return fmt.Errorf("%q: want the host:port of a cluster host's API (e.g. 10.0.0.1:7070)", cfg.Addr)
	}
	// Refused before the cluster is asked, and again when written.
	if err := node.CheckNew(cfg.DataDir); err != nil {
		return err
	}
	tc, err := clustertls.PinnedConfig(tok.CAFingerprint)
	if err != nil {
		return fmt.Errorf("the join token: %w", err)
	}
	body, err := json.Marshal(Request{Addr: cfg.Advertise})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+cfg.Addr+controller.JoinPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	req.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: nil}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("join the cluster at %s: %w", cfg.Addr, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("join the cluster at %s: read the answer: %w", cfg.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e types.ErrorBody
		if json.Unmarshal(answer, &e) == nil && e.Error != nil && e.Error.Message != "" {
			return fmt.Errorf("the cluster at %s refused the join: %s", cfg.Addr, e.Error.Message)
		}
		return fmt.Errorf("the cluster at %s refused the join: %s", cfg.Addr, resp.Status)
	}
	var b Bundle
	if err := json.Unmarshal(answer, &b); err != nil {
		return fmt.Errorf("join the cluster at %s: the answer is not a join bundle: %w", cfg.Addr, err)
	}
	if len(b.EtcdEndpoints) == 0 || b.DatabaseURL == "" {
		return errors.New("join: the cluster's answer has no etcd endpoints or database URL")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", cfg.DataDir, err)
	}
	dbURL := b.DatabaseURL
	if strings.Contains(dbURL, "sslrootcert=") {
		// The CA file of this host.
		if dbURL, err = pgserver.TLSURL(dbURL, filepath.Join(abs, node.TLSDir, clustertls.CACertFile)); err != nil {
			return fmt.Errorf("join: the database URL: %w", err)
		}
	}
	joined, err := json.MarshalIndent(map[string]any{"via": cfg.Addr, "at": time.Now().UTC(), "cluster": b.Cluster}, "", "  ")
	if err != nil {
		return err
	}
	if err := node.WriteJoined(abs, b.Files, dbURL, b.EtcdEndpoints, joined); err != nil {
		return err
	}
	cfg.Logger.Info("joined the cluster: its files are in the data dir", "cluster", b.Cluster, "via", cfg.Addr, "data", abs)
	return nil
}
