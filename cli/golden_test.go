package cli

import (
	"bytes"
	"crypto/ed25519"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testPublicKey returns a reproducible ed25519 public key derived from seed.
func testPublicKey(t *testing.T, seed byte) ssh.PublicKey {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// htmlServer returns the URL of a web server that is not a Gantry API, as
// the router is: it answers every path with an HTML page, 404 but for the
// paths under /ok, which get a 200.
func htmlServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if !strings.HasPrefix(r.URL.Path, "/ok/") {
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, "<!DOCTYPE html>\n<html><head><title>No such app</title></head><body><h1>404</h1></body></html>\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// cliResult is what one run of the command line printed.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs gantry with args as Run does, with stdin as its input and
// testNow as the clock.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	r := &runner{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, getenv: os.Getenv, now: func() time.Time { return testNow }}
	code := r.run(t.Context(), append([]string{"gantry"}, args...))
	return cliResult{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// isolate points the CLI at a fresh config file, home and working directory
// and at the controller url, and clears GANTRY_APP. It returns the home.
func isolate(t *testing.T, url string) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("GANTRY_CONFIG", filepath.Join(home, "gantry-config.json"))
	t.Setenv("GANTRY_URL", url)
	t.Setenv("GANTRY_TOKEN", testToken)
	t.Setenv("GANTRY_APP", "")
	t.Chdir(t.TempDir())
	return home
}

// TestGolden drives whole commands through Run against testController and
// compares what they print with testdata/NAME.golden (go test -update
// rewrites them).
func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
		// stdin is the command's input.
		stdin string
		// env is set after isolate; "$URL" is replaced by the controller URL.
		env map[string]string
		// empty runs against a controller without apps or keys.
		empty bool
		// before are commands run first, which must succeed.
		before [][]string
		// homeKey writes a public key to ~/.ssh/id_ed25519.pub.
		homeKey bool
		// shop adds the app shop, whose jobs show every state.
		shop bool
		// cluster gives the controller four hosts in various states
		// instead of one.
		cluster bool
		// system adds gantry-router, one of the platform's own apps.
		system bool
		// certs writes ~/www.pem and ~/www.key, a certificate for
		// www.example.test and its key, and ~/other.pem for other.test.
		certs bool
		// acme makes the controller obtain certificates for the routes
		// added without one (see testController.obtainCert).
		acme bool
	}{
		{name: "apps", args: []string{"apps"}, system: true},
		{name: "apps_json", args: []string{"apps", "--json"}},
		{name: "apps_all", args: []string{"apps", "--all"}, system: true},
		{name: "apps_empty", args: []string{"apps"}, empty: true},
		{name: "apps_empty_json", args: []string{"apps", "--json"}, empty: true},
		{
			name:   "apps_via_default_cluster",
			args:   []string{"apps"},
			env:    map[string]string{"GANTRY_URL": "", "GANTRY_TOKEN": ""},
			before: [][]string{{"cluster", "add", "local", "$URL", "--token", testToken}},
		},
		{name: "info", args: []string{"info", "-a", "demo"}},
		{name: "hosts", args: []string{"hosts"}, cluster: true},
		{name: "hosts_json", args: []string{"hosts", "--json"}, cluster: true},
		{name: "host_drain", args: []string{"host", "drain", "h1"}},
		{name: "host_drain_json", args: []string{"host", "drain", "h1", "--json"}},
		{name: "host_drain_wait", args: []string{"host", "drain", "h4", "--wait"}, cluster: true},
		{name: "error_host_drain_wait_stuck", args: []string{"host", "drain", "h1", "--wait"}},
		{name: "error_host_drain_last", args: []string{"host", "drain", "last"}},
		{name: "error_host_drain_not_found", args: []string{"host", "drain", "nope"}},
		{name: "error_host_drain_no_host", args: []string{"host", "drain"}},
		{name: "host_undrain", args: []string{"host", "undrain", "h2"}},
		{name: "error_host_undrain_not_found", args: []string{"host", "undrain", "nope"}},
		{name: "host_remove", args: []string{"host", "remove", "h3"}},
		{name: "host_remove_pending", args: []string{"host", "remove", "slow"}},
		{name: "host_remove_etcd_member", args: []string{"host", "remove", "h5"}},
		{name: "error_host_remove_last_etcd_member", args: []string{"host", "remove", "h6"}},
		{name: "error_host_remove_up", args: []string{"host", "remove", "h1"}},
		{name: "error_host_remove_not_found", args: []string{"host", "remove", "nope"}},
		{name: "gc", args: []string{"gc"}},
		{name: "info_json", args: []string{"info", "--app=demo", "--json"}},
		{name: "info_gantry_app", args: []string{"info"}, env: map[string]string{"GANTRY_APP": "api"}},
		{name: "metrics", args: []string{"metrics", "-a", "demo"}},
		{name: "metrics_none", args: []string{"metrics", "-a", "api"}},
		{name: "error_metrics_since", args: []string{"metrics", "-a", "demo", "--since", "3d"}},
		{name: "env", args: []string{"env", "-a", "demo"}},
		{name: "env_json", args: []string{"env", "-a", "demo", "--json"}},
		{name: "env_get", args: []string{"env", "get", "-a", "demo", "QUERY"}},
		{name: "env_set", args: []string{"env", "set", "NEW=x=y", "EMPTY=", "-a", "demo"}},
		{name: "env_set_then_list", args: []string{"env", "-a", "demo"}, before: [][]string{
			{"env", "-a", "demo", "set", "NEW=x=y", "EMPTY="},
			{"env", "unset", "WEB_CONCURRENCY", "--app", "demo"},
		}},
		{name: "env_unset", args: []string{"env", "unset", "-a", "demo", "WEB_CONCURRENCY", "QUERY"}},
		{name: "key_list", args: []string{"key", "list"}},
		{name: "key_list_json", args: []string{"key", "list", "--json"}},
		{name: "keys_empty", args: []string{"keys"}, empty: true},
		{name: "key_add_default_file", args: []string{"key", "add"}, homeKey: true},
		{name: "create", args: []string{"create", "shop"}},
		{name: "create_generated_name", args: []string{"create"}},
		{name: "destroy_prompt", args: []string{"destroy", "-a", "demo"}, stdin: "demo\n"},
		{name: "destroy_confirm", args: []string{"destroy", "-a", "demo", "--confirm", "demo"}},
		{
			name:   "cluster_list",
			args:   []string{"cluster", "list"},
			before: [][]string{{"cluster", "add", "local", "$URL", "--token", "t1"}, {"cluster", "add", "prod", "https://gantry.prod.internal", "--token", "t2"}},
		},
		{
			name:   "cluster_list_json",
			args:   []string{"cluster", "list", "--json"},
			before: [][]string{{"cluster", "add", "local", "$URL", "--token", "t1"}, {"cluster", "add", "--default", "prod", "https://gantry.prod.internal", "--token", "t2"}},
		},
		{name: "ps", args: []string{"ps", "-a", "demo"}},
		{name: "ps_states", args: []string{"ps", "-a", "shop"}, shop: true},
		{name: "ps_json", args: []string{"ps", "-a", "shop", "--json"}, shop: true},
		{name: "ps_all", args: []string{"ps", "--all", "-a", "shop"}, shop: true},
		{name: "ps_empty", args: []string{"ps", "-a", "api"}},
		{name: "scale_show", args: []string{"scale", "-a", "demo"}},
		{name: "scale_show_json", args: []string{"scale", "-a", "demo", "--json"}},
		{name: "scale_show_no_release", args: []string{"scale", "-a", "api"}},
		{name: "scale", args: []string{"scale", "web=3", "worker=0", "-a", "demo"}},
		{name: "scale_no_wait", args: []string{"scale", "web=3", "-a", "demo", "--no-wait"}},
		{name: "scale_then_ps", args: []string{"ps", "-a", "demo"}, before: [][]string{{"scale", "-a", "demo", "web=3", "worker=0"}}},
		{name: "scale_unchanged", args: []string{"scale", "web=2", "-a", "demo"}},
		{name: "release_create", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/server -port $PORT -greeting a,b", "--process", "worker=env MODE=batch /worker", "--health", "web=/healthz", "--description", "hotfix"}},
		{name: "release_create_then_scale", args: []string{"scale", "web=2", "-a", "demo"}, before: [][]string{{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/server"}}},
		{name: "releases", args: []string{"releases", "-a", "demo"}},
		{name: "releases_json", args: []string{"releases", "-a", "demo", "--json"}},
		{name: "releases_empty", args: []string{"releases", "-a", "api"}},
		{name: "release_list", args: []string{"release", "list", "-a", "demo"}},
		{name: "release_show", args: []string{"release", "show", "v2", "-a", "demo"}},
		{name: "release_show_current", args: []string{"release", "show", "-a", "demo", "3"}},
		{name: "release_show_json", args: []string{"release", "show", "v1", "-a", "demo", "--json"}},
		{name: "rollback", args: []string{"rollback", "-a", "demo"}},
		{name: "rollback_version", args: []string{"rollback", "v1", "-a", "demo"}},
		{name: "rollback_then_releases", args: []string{"releases", "-a", "demo"}, before: [][]string{{"rollback", "1", "-a", "demo"}}},
		{name: "rollback_then_env", args: []string{"env", "-a", "demo"}, before: [][]string{{"rollback", "v1", "-a", "demo"}}},
		{name: "error_rollback_bad_version", args: []string{"rollback", "vx", "-a", "demo"}},
		{name: "error_rollback_zero", args: []string{"rollback", "v0", "-a", "demo"}},
		{name: "error_rollback_too_many_args", args: []string{"rollback", "v1", "v2", "-a", "demo"}},
		{name: "error_rollback_unknown_version", args: []string{"rollback", "v9", "-a", "demo"}},
		{name: "error_rollback_no_release", args: []string{"rollback", "-a", "api"}},
		{name: "error_release_show_missing_version", args: []string{"release", "show", "-a", "demo"}},
		{name: "error_release_show_unknown", args: []string{"release", "show", "v7", "-a", "demo"}},
		{name: "kill", args: []string{"kill", "web.2", "-a", "demo"}},
		{name: "kill_id", args: []string{"kill", "-a", "demo", "demo.web.1.0000000a0001"}},
		{name: "kill_one_off", args: []string{"kill", "build.1", "-a", "shop"}, shop: true},
		{name: "restart_type", args: []string{"restart", "web", "-a", "demo"}},
		{name: "restart_all", args: []string{"restart", "-a", "demo"}},
		{name: "route_add", args: []string{"route", "add", "api.example.test", "-a", "demo"}},
		{name: "route_add_tls", args: []string{"route", "add", "www.example.test", "-a", "demo", "--cert", "$HOME/www.pem", "--key", "$HOME/www.key", "--https-only"}, certs: true},
		{name: "route_list", args: []string{"route", "list", "-a", "demo"}, certs: true, before: routesBefore},
		{name: "route_list_json", args: []string{"routes", "-a", "demo", "--json"}, certs: true, before: routesBefore},
		{name: "route_list_acme", args: []string{"route", "list", "-a", "demo"}, certs: true, acme: true, before: routesACMEBefore},
		{name: "route_list_acme_json", args: []string{"routes", "-a", "demo", "--json"}, certs: true, acme: true, before: routesACMEBefore},
		{name: "route_remove", args: []string{"route", "remove", "api.example.test", "-a", "demo"}, certs: true, before: routesBefore},
		{name: "info_routes", args: []string{"info", "-a", "demo"}, certs: true, before: routesBefore},
		{name: "https_only_show", args: []string{"https-only", "-a", "demo"}},
		{name: "https_only_on", args: []string{"https-only", "on", "-a", "demo"}},
		{name: "https_only_off", args: []string{"https-only", "-a", "demo", "off"}, before: [][]string{{"https-only", "on", "-a", "demo"}}},
		{name: "https_only_then_info", args: []string{"info", "-a", "demo"}, before: [][]string{{"https-only", "-a", "demo", "on"}}},
		{name: "error_https_only_bad_arg", args: []string{"https-only", "yes", "-a", "demo"}},
		{name: "error_https_only_too_many_args", args: []string{"https-only", "on", "off", "-a", "demo"}},
		{name: "error_https_only_no_app", args: []string{"https-only", "on", "-a", "nope"}},
		{name: "error_ps_no_app", args: []string{"ps"}},
		{name: "error_scale_bad_count", args: []string{"scale", "web=-1", "-a", "demo"}},
		{name: "error_scale_bad_type", args: []string{"scale", "Web=1", "-a", "demo"}},
		{name: "error_scale_twice", args: []string{"scale", "web=1", "web=2", "-a", "demo"}},
		{name: "error_scale_unknown_type", args: []string{"scale", "db=1", "-a", "demo"}},
		{name: "error_scale_over_cap", args: []string{"scale", "web=101", "-a", "demo"}},
		{name: "error_scale_no_release", args: []string{"scale", "web=1", "-a", "api"}},
		{name: "error_scale_crash", args: []string{"scale", "clock=1", "-a", "demo"}},
		{name: "error_scale_json_with_counts", args: []string{"scale", "web=1", "-a", "demo", "--json"}},
		{name: "error_release_no_image", args: []string{"release", "create", "-a", "demo", "--process", "web=/server"}},
		{name: "error_release_no_process", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4"}},
		{name: "error_release_bad_process", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web"}},
		{name: "error_release_empty_command", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web= "}},
		{name: "error_release_health_unknown_type", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/server", "--health", "api=/healthz"}},
		{name: "error_release_bad_health", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/server", "--health", "web=healthz"}},
		{name: "error_kill_unknown", args: []string{"kill", "web.9", "-a", "demo"}},
		{name: "error_kill_job_not_found", args: []string{"kill", "demo.web.9.000000000000", "-a", "demo"}},
		{name: "error_restart_unknown_type", args: []string{"restart", "db", "-a", "demo"}},
		{name: "error_route_cert_without_key", args: []string{"route", "add", "www.example.test", "-a", "demo", "--cert", "$HOME/www.pem"}, certs: true},
		{name: "error_route_key_without_cert", args: []string{"route", "add", "www.example.test", "-a", "demo", "--key", "$HOME/www.key"}, certs: true},
		{name: "error_route_swapped_files", args: []string{"route", "add", "www.example.test", "-a", "demo", "--cert", "$HOME/www.key", "--key", "$HOME/www.pem"}, certs: true},
		{name: "error_route_cert_missing", args: []string{"route", "add", "www.example.test", "-a", "demo", "--cert", "$HOME/nope.pem", "--key", "$HOME/www.key"}},
		{name: "error_route_cert_other_domain", args: []string{"route", "add", "www.example.test", "-a", "demo", "--cert", "$HOME/other.pem", "--key", "$HOME/other.key"}, certs: true},
		{name: "error_route_bad_domain", args: []string{"route", "add", "www..example.test", "-a", "demo"}},
		{name: "error_route_remove_bad_domain", args: []string{"route", "remove", "-a", "demo", "*.*.example.test"}},
		{name: "route_add_upper_case", args: []string{"route", "add", "-a", "demo", "Shop.Example.TEST"}},
		{name: "error_route_conflict", args: []string{"route", "add", "demo.localhost", "-a", "api"}},
		{name: "error_route_remove_default", args: []string{"route", "remove", "demo.localhost", "-a", "demo"}},
		{name: "error_route_remove_unknown", args: []string{"route", "remove", "nope.example.test", "-a", "demo"}},
		{name: "error_app_not_found", args: []string{"info", "-a", "nope"}},
		{name: "error_token_rejected", args: []string{"apps"}, env: map[string]string{"GANTRY_TOKEN": "wrong"}},
		{name: "error_token_missing", args: []string{"apps"}, env: map[string]string{"GANTRY_TOKEN": ""}},
		{name: "error_unreachable", args: []string{"apps"}, env: map[string]string{"GANTRY_URL": "$CLOSED"}},
		{name: "error_no_app", args: []string{"env"}},
		{name: "error_no_cluster", args: []string{"apps"}, env: map[string]string{"GANTRY_URL": ""}},
		{name: "error_unknown_cluster", args: []string{"apps", "-c", "nope"}},
		{name: "error_bad_assignment", args: []string{"env", "set", "-a", "demo", "GOOD=1", "BAD"}},
		{name: "error_bad_key_name", args: []string{"env", "set", "-a", "demo", "1X=1"}},
		{name: "error_env_get_unset", args: []string{"env", "get", "-a", "demo", "NOPE"}},
		{name: "error_too_many_args", args: []string{"apps", "extra"}},
		{name: "error_missing_args", args: []string{"env", "get", "-a", "demo"}},
		{name: "error_unknown_flag", args: []string{"apps", "--bogus"}},
		{name: "error_unknown_command", args: []string{"frobnicate"}},
		{name: "error_create_conflict", args: []string{"create", "demo"}},
		{name: "error_destroy_mismatch", args: []string{"destroy", "-a", "demo"}, stdin: "dmeo\n"},
		{name: "error_destroy_no_answer", args: []string{"destroy", "-a", "demo"}},
		{name: "error_key_not_found", args: []string{"key", "remove", "SHA256:nope"}},
		{name: "error_key_file_missing", args: []string{"key", "add"}},
		{name: "error_cluster_add_no_token", args: []string{"cluster", "add", "local", "http://127.0.0.1:1"}},
		{name: "error_env_unset_not_set", args: []string{"env", "unset", "-a", "demo", "NOPE"}},
		{name: "env_unset_some_not_set", args: []string{"env", "unset", "-a", "demo", "QUERY", "NOPE"}},
		{name: "error_deploy_timeout_negative", args: []string{"deploy", "timeout", "-a", "demo", "-3"}},
		{name: "error_deploy_timeout_zero", args: []string{"deploy", "timeout", "-a", "demo", "0"}},
		{name: "error_not_gantry_api", args: []string{"apps"}, env: map[string]string{"GANTRY_URL": "$HTML"}},
		{name: "error_not_gantry_api_ok", args: []string{"apps"}, env: map[string]string{"GANTRY_URL": "$HTML/ok"}},
		{name: "error_token_newline", args: []string{"apps"}, env: map[string]string{"GANTRY_TOKEN": "gantry_abc\ndef"}},
	}
	goldenDir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestController(t)
			if !tt.empty {
				tc.seed(t)
			}
			if tt.shop {
				tc.seedShop()
			}
			if tt.system {
				tc.mu.Lock()
				tc.newApp("gantry-router")
				tc.mu.Unlock()
			}
			tc.acme = tt.acme
			tc.cluster = tt.cluster
			closed := closedURL(t)
			html := htmlServer(t)
			home := isolate(t, tc.URL)
			expand := strings.NewReplacer("$URL", tc.URL, "$CLOSED", closed, "$HTML", html, "$HOME", home).Replace
			for k, v := range tt.env {
				t.Setenv(k, expand(v))
			}
			if tt.homeKey {
				line := string(ssh.MarshalAuthorizedKey(testPublicKey(t, 9)))
				writeFile(t, filepath.Join(home, ".ssh", "id_ed25519.pub"), strings.TrimSpace(line)+" dev@workstation\n")
			}
			if tt.certs {
				cert, key := testCertPEM(t, "www.example.test")
				writeFile(t, filepath.Join(home, "www.pem"), cert)
				writeFile(t, filepath.Join(home, "www.key"), key)
				cert, key = testCertPEM(t, "other.test")
				writeFile(t, filepath.Join(home, "other.pem"), cert)
				writeFile(t, filepath.Join(home, "other.key"), key)
			}
			for _, b := range tt.before {
				args := make([]string, len(b))
				for i, a := range b {
					args[i] = expand(a)
				}
				if res := runCLI(t, "", args...); res.code != 0 {
					t.Fatalf("gantry %s: exit %d: %s", strings.Join(args, " "), res.code, res.stderr)
				}
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = expand(a)
			}
			res := runCLI(t, tt.stdin, args...)
			got := formatGolden(tt.args, res)
			got = strings.NewReplacer(
				tc.URL, "http://CONTROLLER",
				closed, "http://UNREACHABLE",
				html, "http://ROUTER",
				strings.TrimPrefix(closed, "http://"), "UNREACHABLE",
				home, "$HOME",
			).Replace(got)
			checkGolden(t, filepath.Join(goldenDir, tt.name+".golden"), got)
		})
	}
}

// routesBefore adds two custom routes to demo, one with TLS.
var routesBefore = [][]string{
	{"route", "add", "api.example.test", "-a", "demo"},
	{"route", "add", "www.example.test", "-a", "demo", "--cert", "$HOME/www.pem", "--key", "$HOME/www.key", "--https-only"},
}

var routesACMEBefore = append([][]string{
	{"route", "add", "issued.example.test", "-a", "demo", "--https-only"},
	{"route", "add", "unreachable.example.test", "-a", "demo"},
	{"route", "add", "*.wild.example.test", "-a", "demo"},
}, routesBefore...)

// formatGolden renders a run as the golden files hold it.
func formatGolden(args []string, res cliResult) string {
	var b strings.Builder
	b.WriteString("$ gantry " + strings.Join(args, " ") + "\n")
	b.WriteString("--- stdout\n" + res.stdout)
	b.WriteString("--- stderr\n" + res.stderr)
	b.WriteString("--- exit " + strconv.Itoa(res.code) + "\n")
	return b.String()
}

// checkGolden compares got with the golden file at path, or rewrites the
// file under -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		writeFile(t, path, got)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// writeFile writes content to path, creating its directory.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
