package etcdserver_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gantryhq/gantry/deploy/etcdserver"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/clustertls"
)

// TestMutualTLS starts an etcd with the cluster's certificates and checks
// that only clients presenting a certificate of the cluster CA get in.
func TestMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	host := clustertls.Host{ID: "host-a", IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	tlsDir := t.TempDir()
	if err := clustertls.Init(tlsDir, host); err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir() // another cluster's CA and certificate
	if err := clustertls.Init(otherDir, host); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	srv, err := etcdserver.Start(ctx, etcdserver.Config{
		Dir:        t.TempDir(),
		ClientAddr: testenv.FreeAddr(t),
		PeerAddr:   testenv.FreeAddr(t),
		NoFsync:    true,
		TLSDir:     tlsDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.Endpoint(), "https://") {
		t.Fatalf("endpoint %s is not https", srv.Endpoint())
	}

	member, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	if _, err := member.Put(ctx, "/secret", "value"); err != nil {
		t.Fatalf("a client with the cluster's certificate: %v", err)
	}

	pool, err := clustertls.CAPool(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := clustertls.ClientConfig(otherDir)
	if err != nil {
		t.Fatal(err)
	}
	foreign.RootCAs = pool // trusts the server, but its certificate is not the cluster's
	tests := []struct {
		name     string
		endpoint string
		tls      *tls.Config
	}{
		{"no client certificate", srv.Endpoint(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		{"a certificate of another CA", srv.Endpoint(), foreign},
		{"plain HTTP", strings.Replace(srv.Endpoint(), "https://", "http://", 1), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{tt.endpoint}, DialTimeout: 2 * time.Second, TLS: tt.tls, Logger: zap.NewNop()})
			if err != nil {
				return // refused at dial
			}
			defer c.Close()
			rctx, rcancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer rcancel()
			if resp, err := c.Get(rctx, "/secret"); err == nil {
				t.Errorf("read %d keys without the cluster's certificate", resp.Count)
			}
		})
	}
}

// TestRun serves clients until its context ends, then returns nil; a
// second Run on the same dir has the data of the first.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded etcd")
	}
	dir := filepath.Join(t.TempDir(), "etcd")
	for _, tc := range []struct {
		name string
		do   func(ctx context.Context, c *clientv3.Client) error
	}{
		{"first run writes", func(ctx context.Context, c *clientv3.Client) error {
			_, err := c.Put(ctx, "k", "v")
			return err
		}},
		{"second run reads", func(ctx context.Context, c *clientv3.Client) error {
			resp, err := c.Get(ctx, "k")
			if err == nil && (len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v") {
				t.Errorf("k is %v, want v", resp.Kvs)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				done <- etcdserver.Run(ctx, etcdserver.Config{Dir: dir, ClientAddr: addr, PeerAddr: testenv.FreeAddr(t), NoFsync: true})
			}()
			stopped := false
			stop := func() {
				if !stopped {
					stopped = true
					cancel()
					if err := <-done; err != nil {
						t.Errorf("Run: %v", err)
					}
				}
			}
			t.Cleanup(stop)
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + addr}, DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// The client waits for the server to come up, within the
			// request's timeout.
			rctx, rcancel := context.WithTimeout(ctx, time.Minute)
			defer rcancel()
			if err := tc.do(rctx, c); err != nil {
				t.Fatal(err)
			}
			stop()
		})
	}
}
