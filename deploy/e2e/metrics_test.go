package e2e

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestProcessUsage runs a process that holds 48 MiB and burns a fifth of a
// core, and reads its figures back through `gantry ps`.
func TestProcessUsage(t *testing.T) {
	p := newPlatform(t)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))

	p.ok("create", "burner")
	p.ok("release", "create", "-a", "burner", "--image", image, "--process", "worker=burn 48 20")
	p.ok("scale", "-a", "burner", "worker=1")

	var u *types.JobUsage
	eventually(t, 2*time.Minute, "the worker's usage in gantry ps --json", func() bool {
		var jobs []types.Job
		if err := json.Unmarshal([]byte(p.ok("ps", "-a", "burner", "--json")), &jobs); err != nil || len(jobs) != 1 {
			return false
		}
		// The first reading has no CPU rate yet: wait for the second.
		u = jobs[0].Usage
		return u != nil && u.CPU > 0 && u.MemoryRSS >= 48<<20
	})
	t.Logf("usage: %.3f cores, RSS %d MiB, limit %d MiB", u.CPU, u.MemoryRSS>>20, u.MemoryLimit>>20)
	// 48 MiB held plus the Go runtime's own few MiB.
	if u.MemoryRSS > 48<<20+32<<20 {
		t.Errorf("RSS %d MiB for a process holding 48 MiB", u.MemoryRSS>>20)
	}
	if u.MemoryLimit == 0 {
		t.Errorf("no memory limit reported; jobs always run with one")
	}
	// The process asks for 0.2 cores; a loaded machine may give it less,
	// never much more.
	if u.CPU < 0.02 || u.CPU > 0.35 {
		t.Errorf("CPU %.3f cores for a process burning 0.2", u.CPU)
	}

	out := p.ok("ps", "-a", "burner")
	if !regexp.MustCompile(`(?m)^worker\.1 .* v1 +\d+% +4\d(\.\d)? MiB / \d+ MiB$`).MatchString(out) {
		t.Errorf("gantry ps does not show CPU and MEM:\n%s", out)
	}
}
