package e2e

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
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

// TestAppMetrics sends requests through the router and reads them back
// from `gantry metrics`: the router counts them per app, the controller's
// collector reads every router each 10 s, and the history answers.
func TestAppMetrics(t *testing.T) {
	p := newPlatform(t)
	docker := testenv.Docker(t)
	image := testenv.BuildTestImage(t, docker, filepath.Join(repoRoot(), "layer0", "host", "testdata", "httpserver"))
	p.ok("create", "counted")
	p.ok("release", "create", "-a", "counted", "--image", image, "--process", "web=serve", "--health", "web=/healthz")
	p.ok("scale", "-a", "counted", "web=1")
	eventually(t, time.Minute, "the app routed", func() bool {
		code, _, err := p.get("counted.localhost", "/")
		return err == nil && code == http.StatusOK
	})

	summary := func() types.MetricSummary {
		var m types.AppMetrics
		if err := json.Unmarshal([]byte(p.ok("metrics", "-a", "counted", "--json")), &m); err != nil {
			t.Fatal(err)
		}
		return m.Summary
	}
	send := func(n int) {
		for range n {
			if code, _, err := p.get("counted.localhost", "/"); err != nil || code != http.StatusOK {
				t.Fatalf("through the router: %d %v", code, err)
			}
		}
	}
	// The collector rates a router from its second reading on: wait until
	// the first requests show, then count a known batch.
	var before types.MetricSummary
	eventually(t, 2*time.Minute, "the first requests in gantry metrics", func() bool {
		send(10)
		before = summary()
		return before.Requests > 0
	})
	const batch = 300
	send(batch)
	var after types.MetricSummary
	eventually(t, 2*time.Minute, "the batch in gantry metrics", func() bool {
		after = summary()
		return after.Requests-before.Requests >= 0.85*batch
	})
	t.Logf("summary: %+v", after)
	if ok := after.StatusClasses["2xx"]; ok < 0.95*after.Requests {
		t.Errorf("2xx %.0f of %.0f requests, all were 200", ok, after.Requests)
	}
	if after.LatencyP50 <= 0 || after.LatencyP50 > after.LatencyP95 || after.LatencyP95 > after.LatencyP99 || after.LatencyP99 > 10 {
		t.Errorf("latency percentiles p50 %v p95 %v p99 %v", after.LatencyP50, after.LatencyP95, after.LatencyP99)
	}
	if out := p.ok("metrics", "-a", "counted"); !strings.Contains(out, "requests") || !strings.Contains(out, "latency p99") {
		t.Errorf("gantry metrics:\n%s", out)
	}
	// The cluster's /metrics has the router's counters, labelled with the
	// router.
	fams := p.scrapeFamilies(t)
	if !hasSeries(fams["gantry_router_requests_total"], "app", "counted") || fams["gantry_router_scrape_up"] == nil {
		t.Errorf("/metrics lacks the router's counters: %v", fams["gantry_router_requests_total"])
	}
}
