package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestWriteDeployments(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	deps := []types.Deployment{
		{ID: "3fa9c2d1-aaaa", NewRelease: 8, Strategy: "one-by-one", State: types.DeployPending, CreatedAt: now.Add(-5 * time.Second)},
		{ID: "1b2c3d4e-bbbb", OldRelease: 6, NewRelease: 7, Strategy: "one-by-one", State: types.DeployRunning, CreatedAt: now.Add(-time.Minute),
			Processes: []types.DeploymentProcess{{Type: "web", Up: 2, Want: 3}, {Type: "worker", Up: 1, Want: 1}}},
		{ID: "5e6f7a8b-cccc", OldRelease: 5, NewRelease: 6, Strategy: "all-at-once", State: types.DeployRolledBack, CreatedAt: now.Add(-3 * time.Hour),
			Reason: "v6 did not come up: web.1 (demo.web.1.abc) crashed: exit status 1", FailedJob: "demo.web.1.abc", LastLines: []string{"panic: boom"}},
		{ID: "9c0d1e2f-dddd", NewRelease: 1, Strategy: "one-by-one", State: types.DeployComplete, CreatedAt: now.Add(-49 * time.Hour),
			Processes: []types.DeploymentProcess{{Type: "web", Up: 1, Want: 1}}},
	}
	var b bytes.Buffer
	writeDeployments(&b, deps, now)
	want := `ID        RELEASES  STRATEGY     STATE        CREATED  PROGRESS / REASON
3fa9c2d1  v8        one-by-one   pending      5s ago   
1b2c3d4e  v6 → v7   one-by-one   running      1m ago   web 2/3, worker 1/1
5e6f7a8b  v5 → v6   all-at-once  rolled back  3h ago   v6 did not come up: web.1 (demo.web.1.abc) crashed: exit status 1
                                                         | panic: boom
9c0d1e2f  v1        one-by-one   complete     2d ago   web 1/1
`
	if got := b.String(); got != want {
		t.Errorf("writeDeployments:\n%s\nwant:\n%s", got, want)
	}
}

func TestDeploymentLines(t *testing.T) {
	tests := []struct {
		name string
		d    types.Deployment
		// line is what following prints while it runs (Status), err the
		// error of a deployment that ended badly ("" when it went well).
		line, err string
	}{
		{"running", types.Deployment{NewRelease: 7, Strategy: "one-by-one", State: types.DeployRunning,
			Processes: []types.DeploymentProcess{{Type: "web", Up: 2, Want: 3}, {Type: "worker", Up: 1, Want: 1}, {Type: "clock", Want: 0}}},
			"Deploying v7 (one-by-one): web 2/3, worker 1/1", ""},
		{"nothing scaled", types.Deployment{NewRelease: 2, Strategy: "all-at-once", State: types.DeployRunning},
			"Deploying v2 (all-at-once): no process is scaled up", ""},
		{"pending", types.Deployment{NewRelease: 8, State: types.DeployPending}, "v8 waits for the running deployment to end", ""},
		{"complete", types.Deployment{NewRelease: 7, State: types.DeployComplete}, "Deployed v7", ""},
		{"rolled back", types.Deployment{OldRelease: 6, NewRelease: 7, State: types.DeployRolledBack, Reason: "web.1 crashed",
			FailedJob: "demo.web.1.abc", LastLines: []string{"a", "b"}},
			"Deploy of v7 failed: web.1 crashed; v6 keeps running",
			"Deploy of v7 failed: web.1 crashed; v6 keeps running\nLast output of demo.web.1.abc:\n  a\n  b"},
		{"failed", types.Deployment{NewRelease: 1, State: types.DeployFailed, Reason: "web.1 crashed"},
			"Deploy of v1 failed: web.1 crashed", "Deploy of v1 failed: web.1 crashed"},
		{"superseded", types.Deployment{NewRelease: 3, State: types.DeploySuperseded},
			"Deploy of v3 was replaced by a newer release before it started", "Deploy of v3 was replaced by a newer release before it started"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.Status(); got != tt.line {
				t.Errorf("Status() = %q, want %q", got, tt.line)
			}
			var out bytes.Buffer
			r := &runner{stdout: &out}
			err := r.deployOutcome(tt.d)
			switch {
			case !tt.d.Ended():
			case tt.err == "" && (err != nil || out.String() != stepPrefix+tt.line+"\n"):
				t.Errorf("deployOutcome = %v, printed %q", err, out.String())
			case tt.err != "" && (err == nil || err.Error() != tt.err):
				t.Errorf("deployOutcome = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"120", 120, true}, {"90s", 90, true}, {"default", 0, true},
		{"0", 0, false}, {"-5", 0, false}, {"+5", 0, false}, {"2m", 0, false}, {"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseTimeout(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseTimeout(%q) = %d, %v", tt.in, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "seconds") {
			t.Errorf("parseTimeout(%q) error %q does not say what to give", tt.in, err)
		}
	}
}

func TestWriteDeploySettings(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	st := &types.DeploySettings{App: "demo", Strategy: "one-by-one", Timeout: 120, TimeoutDefault: true}
	tests := []struct {
		name string
		last *types.Deployment
		want string
	}{
		{"none", nil, "=== demo deploy settings\nStrategy:         one-by-one\nTimeout:          120s (default)\nLast deployment:  none\n"},
		{"failed", &types.Deployment{OldRelease: 2, NewRelease: 3, State: types.DeployRolledBack, Reason: "web.1 crashed", CreatedAt: now.Add(-2 * time.Minute)},
			"=== demo deploy settings\nStrategy:         one-by-one\nTimeout:          120s (default)\nLast deployment:  v2 → v3, rolled back (2m ago)\n                  web.1 crashed\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			writeDeploySettings(&b, "demo", st, tt.last, now)
			if b.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}
