package cli

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// appOfRequests returns the apps named by the /v1/apps/{app}/... requests.
func appOfRequests(requests []string) []string {
	var apps []string
	for _, r := range requests {
		_, path, _ := strings.Cut(r, " ")
		rest, ok := strings.CutPrefix(path, "/v1/apps/")
		if !ok {
			continue
		}
		app, _, _ := strings.Cut(rest, "/")
		if !slices.Contains(apps, app) {
			apps = append(apps, app)
		}
	}
	return apps
}

// TestAppFlag runs every app-scoped command with -a/--app wherever users
// type it, and with the app taken from GANTRY_APP and from the gantry git
// remote, and checks that every request names that app.
func TestAppFlag(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		// remote is the URL of the gantry git remote of the working
		// directory; empty runs outside a repository.
		remote string
		certs  bool
	}{
		{name: "release create, -a first", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/app", "--health", "web=/healthz"}},
		{name: "release create, -a between flags", args: []string{"release", "create", "--image", "demo:v4", "-a", "demo", "--process", "web=/app"}},
		{name: "release create, -a last", args: []string{"release", "create", "--image", "demo:v4", "--process", "web=/app", "-a", "demo"}},
		{name: "release create, -a before create", args: []string{"release", "-a", "demo", "create", "--image", "demo:v4", "--process", "web=/app"}},
		{name: "release create, -a before release", args: []string{"-a", "demo", "release", "create", "--image", "demo:v4", "--process", "web=/app"}},
		{name: "release create, --app=", args: []string{"release", "create", "--app=demo", "--image=demo:v4", "--process=web=/app"}},
		{name: "scale, -a before counts", args: []string{"scale", "-a", "demo", "web=3"}},
		{name: "scale, -a after counts", args: []string{"scale", "web=3", "worker=0", "-a", "demo"}},
		{name: "scale, -a between counts", args: []string{"scale", "web=3", "--app", "demo", "worker=0", "--no-wait"}},
		{name: "scale, -a before scale", args: []string{"-a", "demo", "scale", "web=1"}},
		{name: "scale show", args: []string{"scale", "--json", "-a", "demo"}},
		{name: "ps", args: []string{"ps", "-a", "demo"}},
		{name: "ps, -a before ps", args: []string{"--app", "demo", "ps", "--json"}},
		{name: "kill, -a after the job", args: []string{"kill", "web.1", "-a", "demo"}},
		{name: "kill, -a before the job", args: []string{"kill", "-a", "demo", "web.1"}},
		{name: "restart a type", args: []string{"restart", "web", "-a", "demo"}},
		{name: "restart all", args: []string{"-a", "demo", "restart"}},
		{name: "route add, -a last", args: []string{"route", "add", "www.example.test", "--https-only", "-a", "demo"}},
		{name: "route add, -a before add", args: []string{"route", "-a", "demo", "add", "www.example.test"}},
		{name: "route add with TLS, -a between files", args: []string{"route", "add", "www.example.test", "--cert", "$HOME/www.pem", "-a", "demo", "--key", "$HOME/www.key"}, certs: true},
		{name: "route list", args: []string{"route", "list", "-a", "demo"}},
		{name: "routes", args: []string{"routes", "-a", "demo"}},
		{name: "route remove", args: []string{"route", "remove", "demo.localhost", "-a", "demo"}},
		{name: "info", args: []string{"info", "-a", "demo"}},
		{name: "info, -a before info", args: []string{"-a", "demo", "info"}},
		{name: "GANTRY_APP", args: []string{"scale", "web=1"}, env: map[string]string{"GANTRY_APP": "demo"}},
		{name: "gantry remote", args: []string{"release", "create", "--image", "demo:v4", "--process", "web=/app"}, remote: "ssh://git@127.0.0.1:2222/demo.git"},
		{name: "gantry remote, scale", args: []string{"scale", "web=2"}, remote: "ssh://git@127.0.0.1:2222/demo.git"},
		{name: "-a beats the gantry remote", args: []string{"ps", "-a", "demo"}, remote: "ssh://git@127.0.0.1:2222/api.git"},
		{name: "-a beats GANTRY_APP", args: []string{"ps", "-a", "demo"}, env: map[string]string{"GANTRY_APP": "api"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestController(t)
			tc.seed(t)
			home := isolate(t, tc.URL)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			if tt.remote != "" {
				t.Chdir(gitRepo(t, map[string]string{"gantry": tt.remote}))
			}
			if tt.certs {
				cert, key := testCertPEM(t, "www.example.test")
				writeFile(t, filepath.Join(home, "www.pem"), cert)
				writeFile(t, filepath.Join(home, "www.key"), key)
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "$HOME", home)
			}
			res := runCLI(t, "", args...)
			// route remove of the default route is refused by the
			// controller: what matters is which app it was asked about.
			if res.code != 0 && !strings.Contains(res.stderr, "default route of demo") {
				t.Fatalf("gantry %s: exit %d\n%s", strings.Join(args, " "), res.code, res.stderr)
			}
			if apps := appOfRequests(tc.received()); !slices.Equal(apps, []string{"demo"}) {
				t.Fatalf("gantry %s: requests named the apps %q, want only demo", strings.Join(args, " "), apps)
			}
		})
	}
}

// TestBadArgumentsSendNothing checks that a command line the CLI can tell
// is wrong is refused with a message naming the problem before any
// request reaches the controller.
func TestBadArgumentsSendNothing(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "negative count", args: []string{"scale", "-a", "demo", "web=-1"}, want: `invalid argument "web=-1": the count "-1" is not a non-negative integer`},
		{name: "count not a number", args: []string{"scale", "web=abc", "-a", "demo"}, want: `invalid argument "web=abc": the count "abc" is not a non-negative integer`},
		{name: "no type", args: []string{"scale", "=3", "-a", "demo"}, want: `invalid argument "=3": the process type is empty`},
		{name: "no count", args: []string{"scale", "web", "-a", "demo"}, want: `invalid argument "web": expected TYPE=N`},
		{name: "a type twice", args: []string{"scale", "web=1", "web=2", "-a", "demo"}, want: `web is named twice`},
		{name: "bad type", args: []string{"scale", "Web=1", "-a", "demo"}, want: `"Web" is not a valid process type`},
		{name: "zero timeout", args: []string{"scale", "web=1", "--timeout", "0s", "-a", "demo"}, want: "--timeout must be positive"},
		{name: "bad timeout", args: []string{"scale", "web=1", "--timeout", "soon", "-a", "demo"}, want: `invalid value "soon" for flag -timeout`},
		{name: "json with counts", args: []string{"scale", "web=1", "--json", "-a", "demo"}, want: "--json only applies to showing the formation"},
		{name: "missing --image", args: []string{"release", "create", "-a", "demo", "--process", "web=/app"}, want: "name the Docker image to run: --image IMAGE"},
		{name: "blank --image", args: []string{"release", "create", "-a", "demo", "--image", " ", "--process", "web=/app"}, want: "name the Docker image to run: --image IMAGE"},
		{name: "missing --process", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4"}, want: "name at least one process: --process web='COMMAND'"},
		{name: "empty command", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web="}, want: "the command of web is empty"},
		{name: "process without command", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web"}, want: `expected TYPE=COMMAND`},
		{name: "process twice", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/a", "--process", "web=/b"}, want: "web is named twice"},
		{name: "health of no process", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/app", "--health", "api=/healthz"}, want: "no --process names api"},
		{name: "health path relative", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/app", "--health", "web=healthz"}, want: `the health check path "healthz" does not start with /`},
		{name: "release arguments", args: []string{"release", "create", "-a", "demo", "--image", "demo:v4", "--process", "web=/app", "extra"}, want: `unexpected argument "extra"`},
		{name: "kill without job", args: []string{"kill", "-a", "demo"}, want: "missing arguments"},
		{name: "kill two jobs", args: []string{"kill", "web.1", "web.2", "-a", "demo"}, want: `unexpected argument "web.2"`},
		{name: "restart bad type", args: []string{"restart", "Web", "-a", "demo"}, want: `"Web" is not a valid process type`},
		{name: "ps arguments", args: []string{"ps", "web", "-a", "demo"}, want: `unexpected argument "web"`},
		{name: "route bad domain", args: []string{"route", "add", "bad domain", "-a", "demo"}, want: "bad domain"},
		{name: "route cert without key", args: []string{"route", "add", "www.example.test", "--cert", "$HOME/www.pem", "-a", "demo"}, want: "--cert needs --key"},
		{name: "route key without cert", args: []string{"route", "add", "www.example.test", "--key", "$HOME/www.key", "-a", "demo"}, want: "--key needs --cert"},
		{name: "route cert missing", args: []string{"route", "add", "www.example.test", "--cert", "$HOME/nope.pem", "--key", "$HOME/www.key", "-a", "demo"}, want: "cannot read the certificate file $HOME/nope.pem: no such file"},
		{name: "route cert is a directory", args: []string{"route", "add", "www.example.test", "--cert", "$HOME", "--key", "$HOME/www.key", "-a", "demo"}, want: "cannot read the certificate file $HOME: is a directory"},
		{name: "route key under a file", args: []string{"route", "add", "www.example.test", "--cert", "$HOME/www.pem", "--key", "$HOME/www.pem/key", "-a", "demo"}, want: "cannot read the private key file $HOME/www.pem/key: not a directory"},
		{name: "route cert and key swapped", args: []string{"route", "add", "www.example.test", "--cert", "$HOME/www.key", "--key", "$HOME/www.pem", "-a", "demo"}, want: "$HOME/www.key does not hold a PEM certificate"},
		{name: "route remove bad domain", args: []string{"route", "remove", "www.example.test.", "-a", "demo"}, want: `invalid domain "www.example.test.": remove the trailing dot`},
		{name: "unknown flag", args: []string{"scale", "web=1", "--wait", "-a", "demo"}, want: "unknown flag --wait"},
		{name: "-a without value", args: []string{"scale", "web=1", "-a"}, want: "flag needs an argument: -a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newTestController(t)
			tc.seed(t)
			home := isolate(t, tc.URL)
			cert, key := testCertPEM(t, "www.example.test")
			writeFile(t, filepath.Join(home, "www.pem"), cert)
			writeFile(t, filepath.Join(home, "www.key"), key)
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.ReplaceAll(a, "$HOME", home)
			}
			res := runCLI(t, "", args...)
			stderr := strings.ReplaceAll(res.stderr, home, "$HOME")
			if res.code != 1 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("gantry %s: exit %d, stderr:\n%s\nwant exit 1 and %q", strings.Join(tt.args, " "), res.code, stderr, tt.want)
			}
			if got := tc.received(); len(got) > 0 {
				t.Fatalf("gantry %s sent requests: %q", strings.Join(tt.args, " "), got)
			}
		})
	}
}
