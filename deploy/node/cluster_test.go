package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdvertise(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, step := range []struct {
		name string
		flag string
		set  bool
		want string
	}{
		{"new data dir, default", "127.0.0.1", false, "127.0.0.1"},
		{"set", "127.0.0.3", true, "127.0.0.3"},
		{"the one it was started with", "127.0.0.1", false, "127.0.0.3"},
		{"not an address: not kept", "nope", true, "nope"},
		{"still the last good one", "127.0.0.1", false, "127.0.0.3"},
		{"another one", "10.0.0.5", true, "10.0.0.5"},
		{"then that one", "127.0.0.1", false, "10.0.0.5"},
	} {
		got, err := Advertise(dir, step.flag, step.set)
		if err != nil || got != step.want {
			t.Fatalf("%s: Advertise = %q, %v; want %q", step.name, got, err, step.want)
		}
	}
}

func TestWriteJoined(t *testing.T) {
	full := map[string][]byte{}
	for _, name := range SharedFiles {
		full[name] = []byte("content of " + name)
	}
	without := func(name string) map[string][]byte {
		m := map[string][]byte{}
		for k, v := range full {
			if k != name {
				m[k] = v
			}
		}
		return m
	}
	with := func(name string) map[string][]byte {
		m := without("")
		m[name] = []byte("x")
		return m
	}
	for _, tc := range []struct {
		name    string
		files   map[string][]byte
		exists  bool
		wantErr string
	}{
		{name: "all files", files: full},
		{name: "a file missing", files: without(SecretsKeyFile), wantErr: "did not send " + SecretsKeyFile},
		{name: "a file it does not take", files: with("../../etc/passwd"), wantErr: "does not take"},
		{name: "a data dir of a cluster", files: full, exists: true, wantErr: "belongs to cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.exists {
				if err := os.WriteFile(filepath.Join(dir, ClusterIDFile), []byte("c-1\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteJoined(dir, tc.files, "postgres://db", []string{"https://10.0.0.1:7379"}, []byte("{}"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, content := range full {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(b) != string(content) {
					t.Errorf("%s: %q, %v", name, b, err)
				}
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s: mode %v, %v; want 0600", name, fi.Mode(), err)
				}
			}
			n := &Node{Dir: dir}
			if !n.Joined() {
				t.Error("Joined() is false")
			}
			if eps, err := n.EtcdEndpoints(); err != nil || len(eps) != 1 {
				t.Errorf("endpoints %v, %v", eps, err)
			}
			if url, err := n.DatabaseURL(); err != nil || url != "postgres://db" {
				t.Errorf("database URL %q, %v", url, err)
			}
			if n.EtcdMember() {
				t.Error("a joined host with no member's data nor initial cluster counts as a member")
			}
		})
	}
}
