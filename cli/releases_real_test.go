package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestRealControllerReleases runs gantry releases, release show and
// rollback against the real controller. No job ever comes up, so the
// first release's deployment runs on, every later one stays pending and v1
// stays current; --no-wait returns without following them.
func TestRealControllerReleases(t *testing.T) {
	url, token := startController(t)
	isolate(t, url)
	t.Setenv("GANTRY_TOKEN", token)
	steps := []struct {
		args []string
		fail bool
		// want are strings its stdout (stderr when it fails) must hold.
		want []string
	}{
		{args: []string{"create", "web1"}, want: []string{"Created web1"}},
		{args: []string{"releases", "-a", "web1"}, want: []string{"web1 has no releases yet"}},
		{args: []string{"rollback", "-a", "web1"}, fail: true, want: []string{`app "web1" has no release yet`}},
		{args: []string{"env", "set", "-a", "web1", "GREETING=hi"}, want: []string{"Set GREETING on web1"}},
		{args: []string{"release", "create", "-a", "web1", "--image", "demo:v1", "--process", "web=/app", "--no-wait"}, want: []string{"Created release v1"}},
		{args: []string{"rollback", "-a", "web1"}, fail: true, want: []string{`app "web1" has no release before v1 to roll back to`}},
		{args: []string{"env", "set", "-a", "web1", "GREETING=hello", "--no-wait"}, want: []string{"Set GREETING on web1"}},
		{args: []string{"rollback", "v9", "-a", "web1"}, fail: true, want: []string{`app "web1" has no release v9`}},
		{args: []string{"rollback", "v1", "-a", "web1", "--no-wait"}, want: []string{"Rolled back web1 to v1 as v3\n", "Deploying v3"}},
		{args: []string{"env", "-a", "web1"}, want: []string{"GREETING=hi\n"}},
		{args: []string{"releases", "-a", "web1"}, want: []string{
			"VERSION  CREATED",
			"   v3 ", " ago   rollback to v1\n",
			"   v2 ", " ago   env set GREETING\n",
			"*  v1 ", " ago   image demo:v1\n",
		}},
		{args: []string{"release", "show", "v3", "-a", "web1"}, want: []string{"=== web1 v3\n", "rollback to v1", "Image:        demo:v1\n", "web: /app\n", "GREETING=hi\n"}},
		{args: []string{"release", "show", "1", "-a", "web1"}, want: []string{"=== web1 v1 (current)\n"}},
		{args: []string{"release", "show", "v4", "-a", "web1"}, fail: true, want: []string{`app "web1" has no release 4`}},
	}
	for _, s := range steps {
		res := runCLI(t, "", s.args...)
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
	var rels []types.Release
	if err := json.Unmarshal([]byte(runCLI(t, "", "releases", "--json", "-a", "web1").stdout), &rels); err != nil || len(rels) != 3 || rels[0].Version != 3 {
		t.Fatalf("releases --json: %+v %v", rels, err)
	}
}
