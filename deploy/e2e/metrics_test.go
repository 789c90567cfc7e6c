package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

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

	// The API's /metrics is one Prometheus scrape target for the cluster;
	// it needs a token.
	if code := p.scrape(t, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401", code)
	}
	var fams map[string]*dto.MetricFamily
	eventually(t, time.Minute, "the worker's series in the cluster's /metrics", func() bool {
		fams = p.scrapeFamilies(t)
		return hasSeries(fams["gantry_job_memory_rss_bytes"], "app", "burner")
	})
	for _, name := range []string{"gantry_job_cpu_seconds_total", "gantry_host_memory_total_bytes", "gantry_host_disk_used_bytes", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if up := fams["gantry_host_scrape_up"]; up == nil || len(up.GetMetric()) != 1 || up.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("gantry_host_scrape_up: %v", up)
	}

	out := p.ok("ps", "-a", "burner")
	if !regexp.MustCompile(`(?m)^worker\.1 .* v1 +\d+% +4\d(\.\d)? MiB / \d+ MiB$`).MatchString(out) {
		t.Errorf("gantry ps does not show CPU and MEM:\n%s", out)
	}
}

// scrape GETs the API's /metrics with token (none when empty) and returns
// the status.
func (p *platform) scrape(t *testing.T, token string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.apiURL+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// scrapeFamilies reads the API's /metrics with the admin token and parses
// it with Prometheus' own text parser.
func (p *platform) scrapeFamilies(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.apiURL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return fams
}

// hasSeries reports whether f has a series with the label name=value.
func hasSeries(f *dto.MetricFamily, name, value string) bool {
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == name && l.GetValue() == value {
				return true
			}
		}
	}
	return false
}
