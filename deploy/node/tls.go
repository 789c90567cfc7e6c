package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gantryhq/gantry/layer0/clustertls"
)

// etcdDialTimeout bounds the connection to etcd.
const etcdDialTimeout = 5 * time.Second

// EnsureTLS makes sure the node's host certificate (TLSDir) names, besides
// 127.0.0.1 and localhost, the host part of each of addrs (host:port or a
// bare host); roles call it with the addresses they serve TLS on. Unspecified
// addresses (0.0.0.0, ::) name nothing.
func (n *Node) EnsureTLS(ctx context.Context, addrs ...string) error {
	h := clustertls.Host{ID: n.HostID, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	for _, a := range addrs {
		host := a
		if hp, _, err := net.SplitHostPort(a); err == nil {
			host = hp
		}
		switch ip := net.ParseIP(host); {
		case host == "" || ip != nil && ip.IsUnspecified():
		case ip != nil:
			h.IPs = append(h.IPs, ip)
		default:
			h.DNSNames = append(h.DNSNames, host)
		}
	}
	unlock, err := lock(ctx, n.Path(lockFile))
	if err != nil {
		return err
	}
	defer unlock()
	if err := clustertls.Init(n.Path(TLSDir), h); err != nil {
		return fmt.Errorf("the node's TLS certificates: %w", err)
	}
	return nil
}

// EtcdClientConfig says how a role reaches etcd.
type EtcdClientConfig struct {
	// Endpoints are the client URLs; required. https URLs are reached with
	// mutual TLS.
	Endpoints []string
	// CAFile, CertFile and KeyFile are the CA bundle and the client
	// certificate for an etcd cluster of one's own (`--etcd` with an
	// external cluster). All empty means the node's cluster certificates
	// (TLSDir), which the platform's own etcd requires.
	CAFile, CertFile, KeyFile string
}

// Validate reports missing endpoints and a partial set of files.
func (c EtcdClientConfig) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("etcd: no endpoints")
	}
	set := 0
	for _, f := range []string{c.CAFile, c.CertFile, c.KeyFile} {
		if f != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return errors.New("etcd: give the CA file, the certificate file and the key file together")
	}
	for _, e := range c.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("etcd: endpoint %q is not an http:// or https:// URL", e)
		}
	}
	return nil
}

// EtcdClient connects to etcd as cfg says; the caller closes the client.
func (n *Node) EtcdClient(cfg EtcdClientConfig) (*clientv3.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cc := clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: etcdDialTimeout, Logger: zap.NewNop()}
	if usesTLS(cfg.Endpoints) {
		tc, err := n.etcdTLS(cfg)
		if err != nil {
			return nil, err
		}
		cc.TLS = tc
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client %v: %w", cfg.Endpoints, err)
	}
	return c, nil
}

func (n *Node) etcdTLS(cfg EtcdClientConfig) (*tls.Config, error) {
	if cfg.CertFile == "" {
		return clustertls.ClientConfig(n.Path(TLSDir))
	}
	return clustertls.ClientConfigFromFiles(cfg.CAFile, cfg.CertFile, cfg.KeyFile)
}

func usesTLS(endpoints []string) bool {
	for _, e := range endpoints {
		if strings.HasPrefix(e, "https://") {
			return true
		}
	}
	return false
}
