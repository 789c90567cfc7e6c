package up

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/deploy/node"
)

// TestCheckMode checks that a data dir starts only in the mode it was made
// with, and a new one in either.
func TestCheckMode(t *testing.T) {
	for _, tc := range []struct {
		name       string
		files      []string // made in the data dir; a trailing / makes a directory
		containers bool
		want       string // substring of the error; empty means none
	}{
		{"new dir, containers", nil, true, ""},
		{"new dir, in process", nil, false, ""},
		{"in-process dir, in process", []string{node.PostgresDir + "/"}, false, ""},
		{"in-process dir, containers", []string{node.PostgresDir + "/"}, true, "gantryd up --in-process"},
		{"containers dir, containers", []string{node.PostgresDir + "/", node.DatabaseURLFile}, true, ""},
		{"containers dir, in process", []string{node.PostgresDir + "/", node.DatabaseURLFile}, false, "run as containers"},
		{"external database, in process", []string{node.EtcdDir + "/"}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(dir, f)
				var err error
				if strings.HasSuffix(f, "/") {
					err = os.MkdirAll(p, 0o700)
				} else {
					err = os.WriteFile(p, []byte("x"), 0o600)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			err := checkMode(dir, tc.containers)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("checkMode: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("checkMode: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
