package etcdserver_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/etcdserver"
	"github.com/gantryhq/gantry/deploy/testenv"
)

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
