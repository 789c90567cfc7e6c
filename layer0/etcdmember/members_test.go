package etcdmember_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/gantryhq/gantry/deploy/etcdserver"
	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/clustertls"
	"github.com/gantryhq/gantry/layer0/etcdmember"
)

// member is one etcd member of the test's cluster.
type member struct {
	name, peer, client, dir string
	srv                     *etcdserver.Server
}

// TestGrowAndShrink builds a cluster of three members one at a time, as
// hosts join (the first alone, then each added as a learner and promoted),
// checks that a fourth host is a client only, that writes go on with one
// member down and stop with two, and that a removed member's place is
// taken by the next host.
func TestGrowAndShrink(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three etcd members")
	}
	tlsDir := t.TempDir()
	if err := clustertls.Init(tlsDir, clustertls.Host{ID: "host-a", IPs: []net.IP{net.ParseIP("127.0.0.1")}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// run starts m's member, on its data dir; initial is its
	// --initial-cluster, read at its first start only.
	run := func(m *member, initial string) {
		srv, err := etcdserver.Start(ctx, etcdserver.Config{Dir: m.dir, ClientAddr: m.client, PeerAddr: m.peer,
			Name: m.name, InitialCluster: initial, NoFsync: true, TLSDir: tlsDir})
		if err != nil {
			t.Errorf("start %s: %v", m.name, err)
			return
		}
		t.Cleanup(srv.Close)
		m.srv = srv
	}
	newMember := func(name string) *member {
		return &member{name: name, peer: testenv.FreeAddr(t), client: testenv.FreeAddr(t), dir: t.TempDir()}
	}
	first := newMember("host-a")
	if run(first, ""); t.Failed() {
		t.FailNow()
	}
	cli := client(t, tlsDir, "https://"+first.client)

	join := func(name string) *member {
		m := newMember(name)
		peer := m.peer
		ms, err := etcdmember.Add(ctx, cli, name, "https://"+peer)
		if err != nil {
			t.Fatalf("add %s: %v", name, err)
		}
		if ms == nil {
			return nil
		}
		if !strings.Contains(ms.InitialCluster, name+"=https://"+peer) {
			t.Fatalf("initial cluster %q lacks %s", ms.InitialCluster, name)
		}
		// A join tried again gets the same membership.
		again, err := etcdmember.Add(ctx, cli, name, "https://"+peer)
		if err != nil || again == nil || again.InitialCluster != ms.InitialCluster {
			t.Fatalf("add %s again: %+v, %v; want %+v", name, again, err, ms)
		}
		run(m, ms.InitialCluster)
		if t.Failed() {
			t.FailNow()
		}
		if err := etcdmember.Promote(ctx, cli, "https://"+peer); err != nil {
			t.Fatal(err)
		}
		return m
	}
	b := join("host-b")
	c := join("host-c")
	if b == nil || c == nil {
		t.Fatal("the second and third hosts got no member")
	}
	if d := join("host-d"); d != nil {
		t.Fatal("the fourth host got a member; want a client only")
	}
	urls, err := etcdmember.ClientURLs(ctx, cli, "https://"+c.peer)
	if err != nil {
		t.Fatal(err)
	}
	if len(urls) != 3 || urls[0] != "https://"+c.client {
		t.Fatalf("client URLs %v: want three, host-c's first", urls)
	}

	all := client(t, tlsDir, urls...)
	put := func() error {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := all.Put(pctx, "/k", "v")
		return err
	}
	if err := put(); err != nil {
		t.Fatalf("write with three members: %v", err)
	}
	first.srv.Close()
	if err := eventually(ctx, put); err != nil {
		t.Fatalf("write with one of three members down: %v", err)
	}
	b.srv.Close()
	if err := put(); err == nil {
		t.Fatal("a write with two of three members down succeeded")
	}

	// Every member stops (a full reboot), two come back on their data
	// and converge; host-a is gone for good: removed, and a new host
	// takes its place.
	c.srv.Close()
	var restarted sync.WaitGroup
	for _, m := range []*member{b, c} {
		restarted.Go(func() { run(m, "") }) // each waits for the other: the quorum
	}
	restarted.Wait()
	cli = client(t, tlsDir, "https://"+b.client, "https://"+c.client)
	if err := eventually(ctx, func() error {
		gctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		resp, err := cli.Get(gctx, "/k")
		if err == nil && (len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v") {
			t.Fatalf("after the restart /k is %v", resp.Kvs)
		}
		return err
	}); err != nil {
		t.Fatalf("read after two members came back: %v", err)
	}
	removed, err := etcdmember.Remove(ctx, cli, "host-a")
	if err != nil || !removed {
		t.Fatalf("remove host-a: %v, %v", removed, err)
	}
	if e := join("host-e"); e == nil {
		t.Fatal("the host that joined after a member's removal got no member")
	}
	if removed, err := etcdmember.Remove(ctx, cli, "host-a"); err != nil || removed {
		t.Fatalf("remove host-a again: %v, %v; want nothing to remove", removed, err)
	}
}

func client(t *testing.T, tlsDir string, endpoints ...string) *clientv3.Client {
	t.Helper()
	tc, err := clustertls.ClientConfig(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tc, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually retries f until it succeeds or ctx ends.
func eventually(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}
