package controller_test

import (
	"path/filepath"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestBuildFollowsCache builds one app four times on two host agents: the
// second build runs on the host of the first, where its build cache is,
// though the spread would choose the other host; with that host drained
// the third runs on the other host, and the preference moves there, so
// the fourth stays there after the undrain; with that host gone, the
// fifth runs on the first host again.
func TestBuildFollowsCache(t *testing.T) {
	t.Parallel()
	p := newBuildPlatform(t, "host-1", "host-2")
	ctx := t.Context()
	waitFor(t, "both hosts to be up", func() bool {
		hosts, err := p.c.ListHosts(ctx)
		up := 0
		for _, h := range hosts {
			if h.State == types.HostUp {
				up++
			}
		}
		return err == nil && up == 2
	})
	if _, err := p.c.CreateApp(ctx, "cached"); err != nil {
		t.Fatal(err)
	}
	src := sourceTar(t, filepath.Join(appsDir, "static"), nil)
	build := func(step string) string {
		t.Helper()
		res := p.build(ctx, "cached", "", src, &lines{})
		if res.err != nil {
			t.Fatalf("%s: build: %v\n%s", step, res.err, res.output())
		}
		if res.build.Host == "" {
			t.Fatalf("%s: the build names no host: %+v", step, res.build)
		}
		t.Logf("%s: built on %s", step, res.build.Host)
		return res.build.Host
	}
	other := map[string]string{"host-1": "host-2", "host-2": "host-1"}
	drain := func(host string, on bool) {
		t.Helper()
		var err error
		if on {
			_, err = p.c.DrainHost(ctx, host)
		} else {
			_, err = p.c.UndrainHost(ctx, host)
		}
		if err != nil {
			t.Fatalf("drain %s (%v): %v", host, on, err)
		}
	}

	// The first build runs on host-2, host-1 being drained, and so does
	// the app's web process; with host-1 back, the spread alone would
	// place the next build on host-1, which holds no job of the app. (The
	// assertions hold whichever host the first build takes.)
	drain("host-1", true)
	first := build("first build")
	drain("host-1", false)
	second := other[first]
	if got := build("second build"); got != first {
		t.Errorf("the second build ran on %s, want %s, the host of the first", got, first)
	}

	// The cache's host is drained: the build runs on the other one, cold,
	// and the cache follows it there. Once the app's web process has
	// moved off the drained host (the scheduler has seen the drain), the
	// spread alone would choose that host after its undrain.
	drain(first, true)
	waitFor(t, "the app's jobs to leave "+first, func() bool {
		up := upJobs(t, p.api, "cached")
		for _, j := range up {
			if j.Host == first {
				return false
			}
		}
		return len(up) > 0
	})
	if got := build("build with the cache's host drained"); got != second {
		t.Errorf("with %s drained the build ran on %s, want %s", first, got, second)
	}
	drain(first, false)
	if got := build("build after the undrain"); got != second {
		t.Errorf("after the undrain of %s the build ran on %s, want %s, the host of the last build", first, got, second)
	}

	// The cache's host is gone: the build runs on the other one.
	p.stopHost(second)
	waitFor(t, second+" to be gone", func() bool {
		hosts, err := p.c.ListHosts(ctx)
		for _, h := range hosts {
			if h.ID == second && h.State == types.HostUp {
				return false
			}
		}
		return err == nil
	})
	if got := build("build with the cache's host gone"); got != first {
		t.Errorf("with %s gone the build ran on %s, want %s", second, got, first)
	}
}
