package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// startController runs the real controller on a fresh PostgreSQL database
// and a fresh embedded etcd, on loopback, until the test ends, and returns
// its URL and an admin token. No scheduler or host runs: jobs are never
// placed, and deployments stay pending.
func startController(t *testing.T) (url, token string) {
	t.Helper()
	db := testenv.NewDatabase(t)
	etcd := testenv.Etcd(t)
	if err := controller.Migrate(t.Context(), db, nil); err != nil {
		t.Fatal(err)
	}
	token, err := controller.CreateAdminToken(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := controller.New(controller.Config{
		DatabaseURL: db,
		Cluster:     "c-cli",
		Etcd:        etcd,
		HostToken:   "host-token",
		Domain:      "localhost",
		GitURL:      "ssh://git@127.0.0.1:2222",
		RouterHTTP:  "http://localhost:8080",
		RouterHTTPS: "https://localhost:8443",
		Version:     "0.1.0-cli-test",
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller: %v", err)
		}
		srv.Close()
	})
	return "http://" + ln.Addr().String(), token
}

// TestRealController runs the commands of running apps and routes against
// the real controller, as a user would, one after the other. Waiting for
// jobs needs the scheduler and hosts: the end-to-end tests in deploy/e2e
// cover it.
func TestRealController(t *testing.T) {
	url, token := startController(t)
	home := isolate(t, url)
	t.Setenv("GANTRY_TOKEN", token)
	now := time.Now()
	cert, key := certPEMValid(t, now.Add(-time.Hour), now.Add(90*24*time.Hour), "secure.example.test")
	writeFile(t, filepath.Join(home, "secure.pem"), cert)
	writeFile(t, filepath.Join(home, "secure.key"), key)
	other, otherKey := certPEMValid(t, now.Add(-time.Hour), now.Add(90*24*time.Hour), "other.test")
	writeFile(t, filepath.Join(home, "other.pem"), other)
	writeFile(t, filepath.Join(home, "other.key"), otherKey)
	notAfter := now.Add(90 * 24 * time.Hour).UTC().Format("2006-01-02")

	steps := []struct {
		args []string
		// fail is set when the command must fail.
		fail bool
		// want are strings its stdout (stderr when it fails) must hold.
		want []string
	}{
		{args: []string{"create", "web1"}, want: []string{"Created web1"}},
		{args: []string{"scale", "-a", "web1"}, want: []string{"web1 has no process types yet"}},
		{args: []string{"scale", "web=1", "-a", "web1"}, fail: true, want: []string{"no release"}},
		{args: []string{"route", "list", "-a", "web1"}, want: []string{"web1 has no routes"}},
		{args: []string{"ps", "-a", "web1"}, want: []string{"No processes running"}},
		{args: []string{"release", "create", "-a", "web1", "--image", "demo:v1", "--process", "web=/app -port $PORT", "--health", "web=/healthz", "--no-wait"}, want: []string{"Created release v1 of web1 (web)"}},
		{args: []string{"scale", "-a", "web1"}, want: []string{"web=1\n"}},
		{args: []string{"-a", "web1", "release", "create", "--image", "demo:v2", "--process", "web=/app", "--process", "worker=/app work", "--no-wait"}, want: []string{"Created release v2 of web1 (web, worker)"}},
		{args: []string{"scale", "web=3", "worker=1", "-a", "web1", "--no-wait"}, want: []string{"Scaling web=3 worker=1"}},
		{args: []string{"scale", "-a", "web1"}, want: []string{"web=3 worker=1\n"}},
		{args: []string{"scale", "-a", "web1", "clock=1"}, fail: true, want: []string{"clock"}},
		{args: []string{"scale", "-a", "web1", "web=101"}, fail: true, want: []string{"web=101"}},
		{args: []string{"scale", "-a", "web1", "web=-1"}, fail: true, want: []string{`invalid argument "web=-1"`}},
		{args: []string{"env", "set", "-a", "web1", "GREETING=hi", "--no-wait"}, want: []string{"GREETING"}},
		{args: []string{"scale", "-a", "web1"}, want: []string{"web=3 worker=1\n"}},
		{args: []string{"restart", "-a", "web1", "web"}, want: []string{"Restarting web processes of web1"}},
		{args: []string{"restart", "-a", "web1"}, want: []string{"Restarting all processes of web1"}},
		{args: []string{"restart", "db", "-a", "web1"}, fail: true, want: []string{"db"}},
		{args: []string{"kill", "web.1", "-a", "web1"}, fail: true, want: []string{"web1 has no job web.1"}},
		{args: []string{"kill", "web1.web.1.0123456789ab", "-a", "web1"}, fail: true, want: []string{"web1.web.1.0123456789ab"}},
		{args: []string{"route", "add", "www.example.test", "-a", "web1"}, want: []string{"Added route www.example.test to web1"}},
		{args: []string{"route", "add", "-a", "web1", "secure.example.test", "--cert", "$HOME/secure.pem", "--key", "$HOME/secure.key", "--https-only"}, want: []string{"Added route secure.example.test to web1 (TLS until " + notAfter + ", HTTPS only)"}},
		{args: []string{"route", "add", "-a", "web1", "wrong.example.test", "--cert", "$HOME/other.pem", "--key", "$HOME/other.key"}, fail: true, want: []string{"wrong.example.test"}},
		{args: []string{"route", "add", "-a", "web1", "secure.example.test", "--cert", "$HOME/secure.pem", "--key", "$HOME/other.key"}, fail: true, want: []string{"key"}},
		{args: []string{"create", "api"}, want: []string{"Created api"}},
		{args: []string{"route", "add", "www.example.test", "-a", "api"}, fail: true, want: []string{"www.example.test"}},
		{args: []string{"route", "list", "-a", "web1"}, want: []string{
			"web1.localhost       default  -",
			"secure.example.test  custom   until " + notAfter + "  yes",
			"www.example.test     custom   -",
		}},
		{args: []string{"https-only", "on", "-a", "web1"}, want: []string{"HTTPS only is on for web1"}},
		{args: []string{"info", "-a", "web1"}, want: []string{
			"Web URL:     http://web1.localhost:8080\n             https://web1.localhost:8443\n",
			"Routes:      https://secure.example.test:8443 (TLS until " + notAfter + ", HTTPS only)\n             http://www.example.test:8080\n",
			"HTTPS only:  on (",
			// No job comes up, so the deployments of v2 and v3 stay
			// pending and v1 stays current.
			"Release:     v1\n",
		}},
		{args: []string{"https-only", "-a", "web1", "off"}, want: []string{"HTTPS only is off for web1"}},
		{args: []string{"https-only", "-a", "web1"}, want: []string{"HTTPS only is off for web1"}},
		{args: []string{"route", "remove", "www.example.test", "-a", "web1"}, want: []string{"Removed route www.example.test from web1"}},
		{args: []string{"route", "remove", "www.example.test", "-a", "web1"}, fail: true, want: []string{"www.example.test"}},
		{args: []string{"route", "remove", "web1.localhost", "-a", "web1"}, fail: true, want: []string{"web1.localhost"}},
	}
	for _, s := range steps {
		args := make([]string, len(s.args))
		for i, a := range s.args {
			args[i] = strings.ReplaceAll(a, "$HOME", home)
		}
		res := runCLI(t, "", args...)
		out := res.stdout
		if s.fail {
			out = res.stderr
		}
		if s.fail != (res.code != 0) {
			t.Fatalf("gantry %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(s.args, " "), res.code, res.stdout, res.stderr)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Fatalf("gantry %s: output does not hold %q:\n%s", strings.Join(s.args, " "), w, out)
			}
		}
	}

	// The JSON views are the controller's wire types.
	var f types.Formation
	if err := json.Unmarshal([]byte(runCLI(t, "", "scale", "--json", "-a", "web1").stdout), &f); err != nil {
		t.Fatal(err)
	}
	if f.App != "web1" || f.Release != 3 || f.Processes["web"] != 3 || f.Processes["worker"] != 1 {
		t.Fatalf("scale --json: %+v", f)
	}
	var jobs []types.Job
	if err := json.Unmarshal([]byte(runCLI(t, "", "ps", "--json", "-a", "web1").stdout), &jobs); err != nil || jobs == nil {
		t.Fatalf("ps --json: %v %v", jobs, err)
	}
	var routes []types.Route
	if err := json.Unmarshal([]byte(runCLI(t, "", "route", "list", "--json", "-a", "web1").stdout), &routes); err != nil || len(routes) != 2 {
		t.Fatalf("route list --json: %+v %v", routes, err)
	}
}
