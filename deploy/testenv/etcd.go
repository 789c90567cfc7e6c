package testenv

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/etcdserver"
)

// FreeAddr returns a free 127.0.0.1:port. The port is only reserved until the
// call returns, which is enough for tests that bind it right away.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Etcd starts a real embedded etcd for one test and returns a client of it.
// Both are closed in t.Cleanup.
func Etcd(t testing.TB) *clientv3.Client {
	t.Helper()
	srv := EtcdServer(t)
	cli, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// EtcdServer starts a real embedded etcd for one test, closed in t.Cleanup.
func EtcdServer(t testing.TB) *etcdserver.Server {
	t.Helper()
	var lastErr error
	for range 3 { // a free port can be taken between FreeAddr and bind
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		srv, err := etcdserver.Start(ctx, etcdserver.Config{
			Dir:        t.TempDir(),
			ClientAddr: FreeAddr(t),
			PeerAddr:   FreeAddr(t),
			NoFsync:    true,
		})
		cancel()
		if err == nil {
			t.Cleanup(srv.Close)
			return srv
		}
		lastErr = err
	}
	t.Fatal(fmt.Errorf("start embedded etcd: %w", lastErr))
	return nil
}
