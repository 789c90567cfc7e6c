package cli

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file gives testController the release endpoints (docs/API.md
// "Releases" and "Rollback").

// handleReleases registers the endpoints of this file on mux.
func (tc *testController) handleReleases(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/apps/{app}/releases", tc.listReleases)
	mux.HandleFunc("GET /v1/apps/{app}/releases/{version}", tc.getRelease)
	mux.HandleFunc("POST /v1/apps/{app}/rollback", tc.rollback)
}

// seedReleases gives demo the releases before v3: v1 of an image and v2
// built from source, whose slug was deleted; tc.mu must be held.
func (tc *testController) seedReleases(demo *testApp) {
	st := tc.run(demo)
	st.releases[1] = &testRelease{
		ID: "00000000-0000-4000-9000-000000000001", App: demo.Name, Version: 1, CreatedAt: testNow.Add(-75 * time.Hour),
		Description: "image demo:v1", Image: "demo:v1", Config: map[string]string{"DATABASE_URL": "postgres://db.internal/demo"},
		Processes: map[string]testProcess{"web": {Command: "/server"}},
	}
	st.releases[2] = &testRelease{
		ID: "00000000-0000-4000-9000-000000000002", App: demo.Name, Version: 2, CreatedAt: testNow.Add(-51 * time.Hour),
		Description: "Deploy 1a2b3c4", Image: "gantry/stack:bookworm-1", SlugDeleted: true,
		Slug:   "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Config: map[string]string{"DATABASE_URL": "postgres://db.internal/demo", "WEB_CONCURRENCY": "2"},
		Processes: map[string]testProcess{
			"web":    {Command: "bin/server --port $PORT", HealthPath: "/healthz"},
			"worker": {Command: "bin/worker"},
		},
	}
}

func (tc *testController) listReleases(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	st := tc.run(a)
	out := []*testRelease{}
	for _, v := range slices.Backward(slices.Sorted(maps.Keys(st.releases))) {
		out = append(out, st.releases[v])
	}
	writeTestJSON(w, http.StatusOK, out)
}

func (tc *testController) getRelease(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	v, _ := strconv.Atoi(strings.TrimPrefix(r.PathValue("version"), "v"))
	rel, ok := tc.run(a).releases[v]
	if !ok {
		writeTestError(w, http.StatusNotFound, "release_not_found", fmt.Sprintf("app %q has no release %s", a.Name, r.PathValue("version")))
		return
	}
	writeTestJSON(w, http.StatusOK, rel)
}

// rollback copies a release as the next one, which becomes current at
// once (the jobs follow on the next GET of the jobs).
func (tc *testController) rollback(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Version int `json:"version"`
	}
	if !decodeTestBody(w, r, &req) {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	st := tc.run(a)
	if a.Release == 0 {
		writeTestError(w, http.StatusUnprocessableEntity, "no_release", fmt.Sprintf("app %q has no release yet, so nothing to roll back to", a.Name))
		return
	}
	if req.Version == 0 {
		req.Version = a.Release - 1
		if _, ok := st.releases[req.Version]; !ok {
			writeTestError(w, http.StatusUnprocessableEntity, "no_release",
				fmt.Sprintf("app %q has no release before v%d to roll back to; name one with a version", a.Name, a.Release))
			return
		}
	}
	from, ok := st.releases[req.Version]
	if !ok {
		writeTestError(w, http.StatusNotFound, "release_not_found", fmt.Sprintf("app %q has no release v%d", a.Name, req.Version))
		return
	}
	version := slices.Max(slices.Collect(maps.Keys(st.releases))) + 1
	rel := &testRelease{
		ID: fmt.Sprintf("00000000-0000-4000-9000-%012d", version), App: a.Name, Version: version, CreatedAt: tc.now(),
		Description: fmt.Sprintf("rollback to v%d", from.Version), Image: from.Image, Slug: from.Slug,
		Config: maps.Clone(from.Config), Processes: maps.Clone(from.Processes),
	}
	st.releases[version] = rel
	a.Release = version
	a.config = maps.Clone(from.Config)
	old := st.formation
	st.formation = map[string]int{}
	for typ := range rel.Processes {
		st.formation[typ] = old[typ]
	}
	st.updatedAt = tc.now()
	writeTestJSON(w, http.StatusCreated, rel)
}
