package node_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gantryhq/gantry/deploy/node"
)

// TestOpenConcurrent opens one new data dir from many goroutines at once,
// as role processes started together do: all get the same identity.
func TestOpenConcurrent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	const n = 8
	nodes := make([]*node.Node, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			nd, err := node.Open(t.Context(), dir)
			if err != nil {
				t.Errorf("Open: %v", err)
				return
			}
			nodes[i] = nd
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	first := nodes[0]
	for _, nd := range nodes[1:] {
		if nd.Cluster != first.Cluster || nd.HostID != first.HostID || nd.HostToken != first.HostToken ||
			string(nd.SecretsKey) != string(first.SecretsKey) || nd.GitHostKey != first.GitHostKey {
			t.Fatalf("identities differ: %+v and %+v", nd, first)
		}
	}
	for _, f := range []string{node.HostTokenFile, node.SecretsKeyFile, node.GitHostKeyFile} {
		fi, err := os.Stat(first.Path(f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: others may read it", f, fi.Mode().Perm())
		}
	}
}

func TestOpen(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string
		wantErr bool
		check   func(t *testing.T, nd *node.Node)
	}{
		{"new data dir", nil, false, func(t *testing.T, nd *node.Node) {
			if nd.Cluster == "" || nd.HostID == "" || len(nd.HostToken) != 64 || nd.GitHostKey == "" {
				t.Errorf("identity %+v: want every field", nd)
			}
		}},
		{"existing identity kept", map[string]string{node.ClusterIDFile: "c-kept\n", node.HostIDFile: "host-kept\n", node.HostTokenFile: "token\n"}, false,
			func(t *testing.T, nd *node.Node) {
				if nd.Cluster != "c-kept" || nd.HostID != "host-kept" || nd.HostToken != "token" {
					t.Errorf("identity %+v: want the files' values", nd)
				}
			}},
		{"empty cluster ID file made anew", map[string]string{node.ClusterIDFile: "\n"}, false, func(t *testing.T, nd *node.Node) {
			if nd.Cluster == "" {
				t.Error("no cluster ID")
			}
		}},
		{"invalid cluster ID", map[string]string{node.ClusterIDFile: "C/1\n"}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			nd, err := node.Open(t.Context(), dir)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Open succeeded with %+v, want an error", nd)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, nd)
			again, err := node.Open(t.Context(), dir)
			if err != nil {
				t.Fatal(err)
			}
			if again.Cluster != nd.Cluster || again.HostToken != nd.HostToken || again.GitHostKey != nd.GitHostKey {
				t.Errorf("a second Open got %+v, want %+v", again, nd)
			}
		})
	}
}
