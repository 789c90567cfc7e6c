package host_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	hostclient "github.com/gantryhq/gantry/layer0/host/client"
	"github.com/gantryhq/gantry/layer0/keyspace"
)

// testStats runs a job that holds 48 MiB and keeps a core busy, and reads
// its figures from GET /v1/jobs and from /metrics.
func testStats(t *testing.T, f *fixture) {
	e := f.env(t)
	cfg := e.config("h1")
	cfg.StatsInterval = 200 * time.Millisecond
	e.start(cfg)
	api := e.api("h1")

	spec := keyspace.JobSpec{
		App: "burner", Release: "r1", ReleaseVersion: 3, Type: "worker", Image: e.image,
		Cmd:         []string{"burn", "48"},
		Resources:   keyspace.Resources{Memory: 128 << 20, CPUShares: 256, PIDs: 100},
		StopTimeout: 3 * time.Second,
	}
	e.assign("h1", "burner-worker-1", spec)
	e.waitState("burner-worker-1", keyspace.StateUp)

	var st *hostclient.Stats
	waitFor(t, "the job's figures", func() (bool, string) {
		jobs, err := api.ListJobs(t.Context())
		if err != nil || len(jobs) != 1 {
			return false, fmt.Sprintf("%v %+v", err, jobs)
		}
		st = jobs[0].Stats
		return st != nil && st.MemoryRSS >= 48<<20 && st.CPU > 0, fmt.Sprintf("%+v", st)
	})
	if st.MemoryRSS > 48<<20+48<<20 {
		t.Errorf("RSS %d MiB for a job holding 48 MiB", st.MemoryRSS>>20)
	}
	if st.MemoryLimit != 128<<20 {
		t.Errorf("memory limit %d, want %d", st.MemoryLimit, 128<<20)
	}
	// A busy loop uses at most one core, whatever else runs.
	if st.CPU > 1.2 {
		t.Errorf("CPU %.2f cores for a single busy thread", st.CPU)
	}
	if st.Pids < 1 || st.CPUSeconds <= 0 {
		t.Errorf("figures: %+v", st)
	}

	// /metrics needs the token and serves the same figures.
	mf := scrape(t, e, "h1")
	want := map[string]string{
		"gantry_job_memory_rss_bytes":    "",
		"gantry_job_cpu_seconds_total":   "",
		"gantry_job_memory_limit_bytes":  fmt.Sprint(128 << 20),
		"gantry_job_pids":                "",
		"gantry_job_restarts":            "0",
		"gantry_host_stats_read_seconds": "",
	}
	for name, value := range want {
		fam, ok := mf[name]
		if !ok {
			t.Errorf("/metrics has no %s", name)
			continue
		}
		if name == "gantry_host_stats_read_seconds" {
			continue
		}
		m := fam.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["app"] != "burner" || labels["type"] != "worker" || labels["job"] != "burner-worker-1" || labels["release"] != "3" || labels["host"] != "h1" {
			t.Errorf("%s labels %v", name, labels)
		}
		if got := metricValue(m); value != "" && strconv.FormatFloat(got, 'f', -1, 64) != value {
			t.Errorf("%s = %v, want %s", name, got, value)
		}
	}

	// The host's own figures.
	var u hostclient.Usage
	waitFor(t, "the host's usage", func() (bool, string) {
		var err error
		u, err = api.Usage(t.Context())
		return err == nil && u.CPU > 0 && len(u.Disks) > 0, fmt.Sprintf("%+v %v", u, err)
	})
	if u.Cores < 1 || u.MemoryTotal == 0 || u.MemoryUsed == 0 || u.MemoryUsed > u.MemoryTotal || u.CPU > float64(u.Cores)+0.01 {
		t.Errorf("host usage %+v", u)
	}
	if d := u.Disks[0]; d.Path != cfg.StateDir || d.Used == 0 || d.Used > d.Total {
		t.Errorf("disk of the state dir: %+v", d)
	}
	for _, name := range []string{"gantry_host_cpu_used_cores", "gantry_host_memory_total_bytes", "gantry_host_disk_used_bytes"} {
		if _, ok := mf[name]; !ok {
			t.Errorf("/metrics has no %s", name)
		}
	}

	// The figures end with the job.
	e.unassign("h1", "burner-worker-1")
	waitFor(t, "the job to leave", func() (bool, string) {
		jobs, err := api.ListJobs(t.Context())
		return err == nil && len(jobs) == 0, fmt.Sprintf("%v %d jobs", err, len(jobs))
	})
	if _, ok := scrape(t, e, "h1")["gantry_job_memory_rss_bytes"]; ok {
		t.Errorf("/metrics still has the ended job's memory")
	}
}

// scrape reads the agent's /metrics and parses it as the Prometheus text
// format; a request without the token must be refused.
func scrape(t *testing.T, e *env, hostID string) map[string]*dto.MetricFamily {
	t.Helper()
	h, _, ok := e.hostRecord(hostID)
	if !ok {
		t.Fatalf("no host record of %s", hostID)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	url := h.APIURL + "/metrics"
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %s, want 401", resp.Status)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics of %s: %s %s", hostID, resp.Status, resp.Header.Get("Content-Type"))
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return mf
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}
