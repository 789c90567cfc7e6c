package controller_test

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

// deployed reports the web job of release rel up, as its host would, and
// waits until rel is the app's current release and the deployer has
// mirrored that into etcd (only rel's formations are left).
func (a *api) deployed(t *testing.T, rel *types.Release) {
	t.Helper()
	a.reportJob(t, keyspace.JobState{JobID: fmt.Sprintf("%s.web.1.%012x", rel.App, rel.Version), App: rel.App,
		Release: rel.ID, Type: "web", State: keyspace.StateUp})
	waitFor(t, fmt.Sprintf("v%d to become current", rel.Version), func() bool {
		app, err := a.c.GetApp(t.Context(), rel.App)
		return err == nil && app.Release == rel.Version
	})
	waitFor(t, fmt.Sprintf("only v%d's formations in etcd", rel.Version), func() bool {
		for _, f := range a.formations(t, rel.App) {
			if f.Template.ReleaseVersion != rel.Version {
				return false
			}
		}
		return true
	})
}

// wantCopy checks that rel copies from (image, slug, config, processes)
// with the description of a rollback to it.
func wantCopy(t *testing.T, rel, from *types.Release) {
	t.Helper()
	if rel.Description != fmt.Sprintf("rollback to v%d", from.Version) || rel.Image != from.Image || rel.Slug != from.Slug ||
		!maps.Equal(rel.Config, from.Config) || !maps.Equal(rel.Processes, from.Processes) {
		t.Errorf("v%d = %+v, want a copy of v%d = %+v", rel.Version, rel, from.Version, from)
	}
}

func TestRollback(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	_, err := a.c.Rollback(ctx, "demo", 0)
	wantAPIError(t, err, types.ErrNoRelease, `app "demo" has no release yet`)
	if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"A": ptr("1")}); err != nil {
		t.Fatal(err)
	}
	v1, err := a.c.CreateRelease(ctx, "demo", types.ReleaseRequest{Image: "demo:v1", Processes: map[string]types.Process{
		"web": {Command: "/server", HealthPath: "/healthz"}, "worker": {Command: "/worker"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a.deployed(t, v1)
	_, err = a.c.Rollback(ctx, "demo", 0)
	wantAPIError(t, err, types.ErrNoRelease, `app "demo" has no release before v1 to roll back to`)
	_, err = a.c.Rollback(ctx, "demo", 9)
	wantAPIError(t, err, types.ErrReleaseNotFound, `app "demo" has no release v9`)

	// v2: other image and processes; v3: other config.
	v2, err := a.c.CreateRelease(ctx, "demo", types.ReleaseRequest{Image: "demo:v2", Processes: map[string]types.Process{
		"web": {Command: "/server2"}, "clock": {Command: "/clock"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a.deployed(t, v2)
	if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"A": ptr("2"), "B": ptr("x")}); err != nil {
		t.Fatal(err)
	}
	v3, err := a.c.GetRelease(ctx, "demo", 3)
	if err != nil {
		t.Fatal(err)
	}
	a.deployed(t, v3)

	// The default goes back to v2, config vars included, and deploys like
	// any release: v3 keeps running next to v4 until v4 is up.
	v4, err := a.c.Rollback(ctx, "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v4.Version != 4 {
		t.Errorf("rollback made v%d, want v4", v4.Version)
	}
	wantCopy(t, v4, v2)
	if got, err := a.c.GetRelease(ctx, "demo", 4); err != nil || got.Description != "rollback to v2" {
		t.Errorf("GetRelease(4) = %+v, %v", got, err)
	}
	if env, err := a.c.GetConfig(ctx, "demo"); err != nil || !maps.Equal(env, map[string]string{"A": "1"}) {
		t.Errorf("config after the rollback = %v, %v; want v2's", env, err)
	}
	// One by one: the deployer asks for v4's job next to v3's.
	waitFor(t, "v3 and v4 web=1 in etcd", func() bool {
		return maps.Equal(counts(a.formations(t, "demo")), map[string]int{"v3/web": 1, "v4/web": 1})
	})
	fs := a.formations(t, "demo")
	if tpl := fs["v4/web"].Template; tpl.Image != "demo:v2" || tpl.Env["A"] != "1" || tpl.Env["B"] != "" ||
		strings.Join(tpl.Cmd, " ") != "/server2" {
		t.Errorf("v4 web template = %+v, want v2's image, command and config", tpl)
	}
	if app, _ := a.c.GetApp(ctx, "demo"); app.Release != 3 {
		t.Errorf("current release while the rollback deploys = %d, want 3", app.Release)
	}
	a.deployed(t, v4)
	if c := counts(a.formations(t, "demo")); !maps.Equal(c, map[string]int{"v4/web": 1}) {
		t.Errorf("etcd after the rollback = %v, want v4 web=1", c)
	}

	// A release that never became current (v5, whose job crashed, so
	// its deployment rolled back) is skipped by the default. v6 waits
	// for v5's deployment to end.
	v5, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v5"))
	if err != nil {
		t.Fatal(err)
	}
	v6, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v6"))
	if err != nil {
		t.Fatal(err)
	}
	exit := 1
	a.reportJob(t, keyspace.JobState{JobID: "demo.web.1.00000000f005", App: "demo", Release: v5.ID, Type: "web",
		State: keyspace.StateCrashed, ExitCode: &exit})
	a.deployed(t, v6)
	v7, err := a.c.Rollback(ctx, "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	if v7.Description != "rollback to v4" || v7.Image != "demo:v2" {
		t.Errorf("default rollback from v6 = %+v, want a copy of v4", v7)
	}
	a.deployed(t, v7)

	// The current release's content is allowed, and an explicit version
	// in the body, as "v1" in the client would be.
	v8, err := a.c.Rollback(ctx, "demo", 7)
	if err != nil {
		t.Fatal(err)
	}
	wantCopy(t, v8, v7)
	resp, body := a.raw(t, "POST", "/v1/apps/demo/rollback", `{"version": 1}`, "Bearer "+a.token)
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"description":"rollback to v1"`) {
		t.Fatalf("rollback to v1: %d %s", resp.StatusCode, body)
	}
	v9, err := a.c.GetRelease(ctx, "demo", 9)
	if err != nil {
		t.Fatal(err)
	}
	wantCopy(t, v9, v1)
	// No body at all is the default.
	resp, body = a.raw(t, "POST", "/v1/apps/demo/rollback", "", "Bearer "+a.token)
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"version":10`) {
		t.Fatalf("rollback without a body: %d %s", resp.StatusCode, body)
	}

	a.runRaw(t, []rawCase{
		{"unknown app", "POST", "/v1/apps/nope/rollback", `{}`, 404, "app_not_found", `no app named "nope"`},
		{"malformed JSON", "POST", "/v1/apps/demo/rollback", `{"version":`, 400, "bad_request", "malformed JSON"},
		{"version as a string", "POST", "/v1/apps/demo/rollback", `{"version": "v3"}`, 400, "bad_request", `field "version"`},
		{"unknown field", "POST", "/v1/apps/demo/rollback", `{"release": 3}`, 400, "bad_request", "release"},
		{"negative version", "POST", "/v1/apps/demo/rollback", `{"version": -1}`, 422, "invalid", "positive"},
		{"unknown version", "POST", "/v1/apps/demo/rollback", `{"version": 99}`, 404, "release_not_found", "no release v99"},
		{"wrong method", "GET", "/v1/apps/demo/rollback", ``, 405, "method_not_allowed", "POST"},
	})
}

func TestRollbackSlug(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	v1, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v1"))
	if err != nil {
		t.Fatal(err)
	}
	a.deployed(t, v1)
	// Make v1 a release built from source, as a build would.
	const slugPath = "slugs/demo/b1.tgz"
	content := "a slug"
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(content)))
	a.sql(t, `UPDATE releases SET image = 'gantry/stack:test', slug = $1, slug_path = $2 WHERE version = 1`, digest, slugPath)
	v2, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v2"))
	if err != nil {
		t.Fatal(err)
	}
	a.deployed(t, v2)

	// The slug is not in the blobstore (it was pruned): nothing changes.
	_, err = a.c.Rollback(ctx, "demo", 1)
	wantAPIError(t, err, types.ErrInvalid, "the slug of that release was deleted")
	rels, err := a.c.ListReleases(ctx, "demo")
	if err != nil || len(rels) != 2 {
		t.Fatalf("releases after the refused rollback: %d, %v; want 2", len(rels), err)
	}
	if !rels[1].SlugDeleted || rels[0].SlugDeleted {
		t.Errorf("slug_deleted of v2, v1 = %v, %v; want false, true", rels[0].SlugDeleted, rels[1].SlugDeleted)
	}

	resp, body := a.raw(t, "PUT", "/v1/blobs/"+slugPath, content, "Bearer "+a.token)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT the slug: %d %s", resp.StatusCode, body)
	}
	v3, err := a.c.Rollback(ctx, "demo", 0)
	if err != nil {
		t.Fatal(err)
	}
	v1, err = a.c.GetRelease(ctx, "demo", 1)
	if err != nil {
		t.Fatal(err)
	}
	wantCopy(t, v3, v1)
	var path string
	a.queryRow(t, `SELECT slug_path FROM releases WHERE version = 3`, &path)
	if path != slugPath {
		t.Errorf("v3's slug path = %q, want %q", path, slugPath)
	}
	// One by one: v3's first job is asked for at the deployer's first step.
	waitFor(t, "v3's formation in etcd", func() bool { _, ok := a.formations(t, "demo")["v3/web"]; return ok })
	tpl := a.formations(t, "demo")["v3/web"].Template
	if len(tpl.Artifacts) != 1 || tpl.Artifacts[0].Digest != digest || !strings.HasSuffix(tpl.Artifacts[0].URL, "/v1/blobs/"+slugPath) ||
		tpl.Image != "gantry/stack:test" {
		t.Errorf("v3 web template = %+v, want v1's slug on the stack image", tpl)
	}
}
