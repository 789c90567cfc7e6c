package cli

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// This file gives testController the endpoints of running apps and routes
// (docs/API.md "Running apps" and "Routes"). Jobs move one step towards
// the formation on every GET of the jobs, so that gantry scale sees them
// converge over a few polls: pending, starting, up; a command holding
// "crash" exits at start, and the crashed job is replaced by one with
// Restarts+1; surplus jobs and the jobs of other releases go through
// stopping and disappear once the release's jobs are up.

// testNow is the clock of the CLI runs in tests.
var testNow = time.Date(2026, 1, 2, 4, 0, 0, 0, time.UTC)

type testRelease struct {
	ID          string                 `json:"id"`
	App         string                 `json:"app"`
	Version     int                    `json:"version"`
	CreatedAt   time.Time              `json:"created_at"`
	Description string                 `json:"description"`
	Image       string                 `json:"image"`
	Slug        string                 `json:"slug"`
	Config      map[string]string      `json:"config"`
	Processes   map[string]testProcess `json:"processes"`
	SlugDeleted bool                   `json:"slug_deleted,omitempty"`
}

type testProcess struct {
	Command    string `json:"command"`
	HealthPath string `json:"health_path,omitempty"`
}

type testFormation struct {
	App       string         `json:"app"`
	Release   int            `json:"release"`
	Processes map[string]int `json:"processes"`
	UpdatedAt time.Time      `json:"updated_at"`
}

type testJob struct {
	ID        string       `json:"id"`
	App       string       `json:"app"`
	Release   int          `json:"release"`
	Type      string       `json:"type"`
	Index     int          `json:"index"`
	Host      string       `json:"host"`
	State     string       `json:"state"`
	Addr      string       `json:"addr,omitempty"`
	StartedAt time.Time    `json:"started_at,omitzero"`
	UpdatedAt time.Time    `json:"updated_at"`
	Restarts  int          `json:"restarts"`
	ExitCode  *int         `json:"exit_code,omitempty"`
	Error     string       `json:"error,omitempty"`
	LastLines []string     `json:"last_lines,omitempty"`
	OneOff    bool         `json:"one_off,omitempty"`
	RestartAt time.Time    `json:"restart_at,omitzero"`
	LastExit  *testJobExit `json:"last_exit,omitempty"`
}

type testJobExit struct {
	ExitCode  *int      `json:"exit_code,omitempty"`
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at"`
	LastLines []string  `json:"last_lines,omitempty"`
}

// crash makes j crashed now with an exit code and last lines, as the
// controller shows a crashed job.
func (j *testJob) crash(code int, lines ...string) {
	j.State, j.ExitCode, j.Addr, j.UpdatedAt, j.LastLines = types.JobCrashed, &code, "", testNow, lines
	j.LastExit = &testJobExit{ExitCode: &code, At: testNow, LastLines: lines}
}

type testRoute struct {
	Domain       string    `json:"domain"`
	App          string    `json:"app"`
	Default      bool      `json:"default"`
	HTTPSOnly    bool      `json:"https_only"`
	TLS          bool      `json:"tls"`
	CertNotAfter time.Time `json:"cert_not_after,omitzero"`
	CreatedAt    time.Time `json:"created_at"`
	CertState    string    `json:"cert_state,omitempty"`
	CertError    string    `json:"cert_error,omitempty"`
	CertRetryAt  time.Time `json:"cert_retry_at,omitzero"`
}

// testRunState is what testController keeps of an app's releases, jobs and
// routes.
type testRunState struct {
	releases  map[int]*testRelease
	formation map[string]int
	updatedAt time.Time
	jobs      []*testJob
	routes    map[string]*testRoute
	// frozen jobs do not move.
	frozen bool
}

// maxTestCount is the formation cap of testController.
const maxTestCount = 100

// handleRunning registers the endpoints of this file on mux.
func (tc *testController) handleRunning(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/apps/{app}/releases", tc.createRelease)
	mux.HandleFunc("GET /v1/apps/{app}/formation", tc.getFormation)
	mux.HandleFunc("PUT /v1/apps/{app}/formation", tc.putFormation)
	mux.HandleFunc("GET /v1/apps/{app}/jobs", tc.listJobs)
	mux.HandleFunc("DELETE /v1/apps/{app}/jobs/{job}", tc.killJob)
	mux.HandleFunc("POST /v1/apps/{app}/restart", tc.restart)
	mux.HandleFunc("GET /v1/apps/{app}/routes", tc.listRoutes)
	mux.HandleFunc("POST /v1/apps/{app}/routes", tc.addRoute)
	mux.HandleFunc("DELETE /v1/apps/{app}/routes/{domain}", tc.removeRoute)
	tc.handleReleases(mux)
}

// run returns the run state of a, creating it; tc.mu must be held.
func (tc *testController) run(a *testApp) *testRunState {
	if a.run == nil {
		a.run = &testRunState{releases: map[int]*testRelease{}, formation: map[string]int{}, routes: map[string]*testRoute{}}
	}
	return a.run
}

// seedRunning gives demo release v3 (web, worker, and clock, whose command
// crashes) with web=2 worker=1 up; tc.mu must be held.
func (tc *testController) seedRunning(demo *testApp) {
	tc.seedReleases(demo)
	st := tc.run(demo)
	st.releases[3] = &testRelease{
		ID: "00000000-0000-4000-9000-000000000003", App: demo.Name, Version: 3, CreatedAt: testNow.Add(-50 * time.Hour),
		Description: "image demo:v3", Image: "demo:v3", Config: demo.config,
		Processes: map[string]testProcess{
			"web":    {Command: "/server -port $PORT", HealthPath: "/healthz"},
			"worker": {Command: "/worker"},
			"clock":  {Command: "/clock --crash"},
		},
	}
	st.formation = map[string]int{"web": 2, "worker": 1, "clock": 0}
	st.updatedAt = testNow.Add(-2 * time.Hour)
	for _, j := range []struct {
		typ   string
		index int
		age   time.Duration
	}{{"web", 1, 3 * time.Minute}, {"web", 2, 2 * time.Hour}, {"worker", 1, 50 * time.Hour}} {
		job := tc.newJob(demo.Name, 3, j.typ, j.index, 0)
		job.State, job.StartedAt, job.UpdatedAt = types.JobUp, testNow.Add(-j.age), testNow.Add(-j.age)
		job.Addr = fmt.Sprintf("127.0.0.1:%d", 49152+tc.jobSeq)
		st.jobs = append(st.jobs, job)
	}
}

// seedShop adds the app shop, whose frozen jobs show every state.
func (tc *testController) seedShop() {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	shop := tc.newApp("shop")
	shop.Release = 7
	st := tc.run(shop)
	st.frozen = true
	st.releases[7] = &testRelease{
		ID: "00000000-0000-4000-9000-000000000007", App: "shop", Version: 7, CreatedAt: testNow.Add(-time.Hour),
		Image: "shop:v7", Config: map[string]string{},
		Processes: map[string]testProcess{"web": {Command: "/shop"}, "worker": {Command: "/jobs"}, "clock": {Command: "/clock"}},
	}
	st.formation = map[string]int{"web": 3, "worker": 1, "clock": 1}
	exit1 := 1
	add := func(release int, typ string, index int, state string, started, updated time.Duration, f func(*testJob)) {
		j := tc.newJob("shop", release, typ, index, 0)
		j.State, j.UpdatedAt = state, testNow.Add(-updated)
		if started > 0 {
			j.StartedAt = testNow.Add(-started)
			j.Addr = fmt.Sprintf("127.0.0.1:%d", 49152+tc.jobSeq)
		}
		if f != nil {
			f(j)
		}
		st.jobs = append(st.jobs, j)
	}
	add(7, "web", 1, types.JobUp, 3*time.Minute, 3*time.Minute, nil)
	add(7, "web", 2, types.JobStarting, 5*time.Second, 5*time.Second, func(j *testJob) {
		exit137 := 137
		j.Restarts = 3
		j.LastExit = &testJobExit{ExitCode: &exit137, Error: "out of memory", At: testNow.Add(-8 * time.Second),
			LastLines: []string{"l1", "l2", "loading 2 GB of fixtures", "\x1b[31mallocating\tcache\x1b[0m", "", "killed"}}
	})
	add(7, "web", 3, types.JobPending, 0, 2*time.Second, func(j *testJob) { j.Host = "host-9f8e" })
	add(6, "web", 1, types.JobStopping, 26*time.Hour, 1*time.Second, nil)
	add(7, "worker", 1, types.JobCrashed, 0, 40*time.Second, func(j *testJob) {
		j.Restarts, j.ExitCode, j.LastLines = 5, &exit1, []string{"connecting to redis", "fatal: REDIS_URL is not set"}
		j.RestartAt = testNow.Add(20 * time.Second)
		j.LastExit = &testJobExit{ExitCode: &exit1, At: j.UpdatedAt, LastLines: j.LastLines}
	})
	add(7, "worker", 2, types.JobCrashed, 0, 5*time.Minute, func(j *testJob) {
		j.Restarts, j.ExitCode, j.RestartAt = 9, &exit1, testNow.Add(-time.Second)
		j.LastExit = &testJobExit{ExitCode: &exit1, At: j.UpdatedAt}
	})
	add(7, "clock", 1, types.JobCrashed, 0, 10*time.Second, func(j *testJob) {
		j.Error = "image not found: shop:v7"
		j.LastExit = &testJobExit{Error: j.Error, At: j.UpdatedAt}
	})
	add(0, "build", 1, types.JobUp, 30*time.Second, 30*time.Second, func(j *testJob) { j.OneOff, j.Addr = true, "" })
	add(6, "web", 3, types.JobCrashed, 0, 2*time.Minute, func(j *testJob) {
		j.ExitCode, j.LastLines = &exit1, []string{"old release failing"}
		j.LastExit = &testJobExit{ExitCode: &exit1, At: j.UpdatedAt, LastLines: j.LastLines}
	})
	add(5, "web", 2, types.JobDown, 0, 30*time.Second, func(j *testJob) { j.StartedAt = testNow.Add(-30 * time.Hour) })
}

// newJob returns a pending job; tc.mu must be held.
func (tc *testController) newJob(app string, release int, typ string, index, restarts int) *testJob {
	tc.jobSeq++
	return &testJob{
		ID: fmt.Sprintf("%s.%s.%d.%012x", app, typ, index, 0xa0000+tc.jobSeq), App: app, Release: release,
		Type: typ, Index: index, Host: "host-1a2b", State: types.JobPending, UpdatedAt: testNow, Restarts: restarts,
	}
}

// tick moves a's jobs one step towards its formation; tc.mu must be held.
func (tc *testController) tick(a *testApp) {
	st := tc.run(a)
	if st.frozen {
		return
	}
	rel := st.releases[a.Release]
	var jobs []*testJob
	for _, j := range st.jobs {
		switch j.State {
		case types.JobPending:
			j.State, j.StartedAt, j.UpdatedAt = types.JobStarting, testNow, testNow
			j.Addr = fmt.Sprintf("127.0.0.1:%d", 49152+tc.jobSeq)
		case types.JobStarting:
			if p, ok := st.releases[j.Release].Processes[j.Type]; ok && strings.Contains(p.Command, "crash") {
				j.crash(2, "loading schedule", "panic: no schedule in $CLOCK_SCHEDULE")
			} else {
				j.State, j.UpdatedAt = types.JobUp, testNow
			}
		case types.JobCrashed:
			exit := j.LastExit
			j = tc.newJob(a.Name, j.Release, j.Type, j.Index, j.Restarts+1)
			j.LastExit = exit
		case types.JobStopping:
			continue
		}
		jobs = append(jobs, j)
	}
	st.jobs = jobs
	if rel == nil {
		return
	}
	for _, j := range st.jobs {
		if _, ok := rel.Processes[j.Type]; !ok {
			j.State, j.UpdatedAt = types.JobStopping, testNow
		}
	}
	for _, typ := range slices.Sorted(maps.Keys(rel.Processes)) {
		want := st.formation[typ]
		var cur []*testJob
		up := 0
		for _, j := range st.jobs {
			if j.Type == typ && j.Release == rel.Version && j.State != types.JobStopping {
				cur = append(cur, j)
				if j.State == types.JobUp {
					up++
				}
			}
		}
		slices.SortFunc(cur, func(x, y *testJob) int { return cmp.Compare(x.Index, y.Index) })
		for i := want; i < len(cur); i++ {
			cur[i].State, cur[i].UpdatedAt = types.JobStopping, testNow
		}
		for index := 1; len(cur) < want; index++ {
			if !slices.ContainsFunc(cur, func(j *testJob) bool { return j.Index == index }) {
				j := tc.newJob(a.Name, rel.Version, typ, index, 0)
				cur = append(cur, j)
				st.jobs = append(st.jobs, j)
			}
		}
		if up >= want {
			for _, j := range st.jobs {
				if j.Type == typ && j.Release != rel.Version {
					j.State, j.UpdatedAt = types.JobStopping, testNow
				}
			}
		}
	}
}

func (tc *testController) createRelease(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Image       string                 `json:"image"`
		Processes   map[string]testProcess `json:"processes"`
		Description string                 `json:"description"`
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
	if req.Image == "" {
		writeTestError(w, http.StatusUnprocessableEntity, "invalid", "a release needs an image")
		return
	}
	for typ, p := range req.Processes {
		if types.ValidateProcessType(typ) != nil || strings.TrimSpace(p.Command) == "" {
			writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("invalid process %q", typ))
			return
		}
	}
	if req.Description == "" {
		req.Description = "image " + req.Image
	}
	st := tc.run(a)
	old := st.formation
	a.Release++
	rel := &testRelease{
		ID: fmt.Sprintf("00000000-0000-4000-9000-%012d", a.Release), App: a.Name, Version: a.Release, CreatedAt: tc.now(),
		Description: req.Description, Image: req.Image, Config: maps.Clone(a.config), Processes: req.Processes,
	}
	st.releases[a.Release] = rel
	st.formation = map[string]int{}
	for typ := range rel.Processes {
		st.formation[typ] = old[typ]
	}
	if _, ok := rel.Processes["web"]; ok && len(old) == 0 {
		st.formation["web"] = 1
	}
	st.updatedAt = tc.now()
	writeTestJSON(w, http.StatusCreated, rel)
}

// formation returns a's formation; tc.mu must be held.
func (tc *testController) formation(a *testApp) testFormation {
	st := tc.run(a)
	return testFormation{App: a.Name, Release: a.Release, Processes: maps.Clone(st.formation), UpdatedAt: st.updatedAt}
}

func (tc *testController) getFormation(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	if tc.run(a).releases[a.Release] == nil {
		writeTestError(w, http.StatusUnprocessableEntity, "no_release", fmt.Sprintf("%s has no release yet: deploy it first", a.Name))
		return
	}
	writeTestJSON(w, http.StatusOK, tc.formation(a))
}

func (tc *testController) putFormation(w http.ResponseWriter, r *http.Request) {
	var counts map[string]int
	if !decodeTestBody(w, r, &counts) {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	rel := tc.run(a).releases[a.Release]
	if rel == nil {
		writeTestError(w, http.StatusUnprocessableEntity, "no_release", fmt.Sprintf("%s has no release yet: deploy it first", a.Name))
		return
	}
	for _, typ := range slices.Sorted(maps.Keys(counts)) {
		n := counts[typ]
		if _, ok := rel.Processes[typ]; !ok {
			writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("release v%d of %s has no process type %q (it has %s)", rel.Version, a.Name, typ, strings.Join(slices.Sorted(maps.Keys(rel.Processes)), ", ")))
			return
		}
		if n < 0 || n > maxTestCount {
			writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("invalid count %d for %s: it must be between 0 and %d", n, typ, maxTestCount))
			return
		}
	}
	maps.Copy(tc.run(a).formation, counts)
	tc.run(a).updatedAt = tc.now()
	writeTestJSON(w, http.StatusOK, tc.formation(a))
}

func (tc *testController) listJobs(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	tc.tick(a)
	jobs := slices.Clone(tc.run(a).jobs)
	slices.SortStableFunc(jobs, func(x, y *testJob) int {
		return cmp.Or(cmp.Compare(x.Type, y.Type), cmp.Compare(x.Index, y.Index), cmp.Compare(x.Release, y.Release))
	})
	if jobs == nil {
		jobs = []*testJob{}
	}
	writeTestJSON(w, http.StatusOK, jobs)
}

func (tc *testController) killJob(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	st := tc.run(a)
	i := slices.IndexFunc(st.jobs, func(j *testJob) bool { return j.ID == r.PathValue("job") })
	if i < 0 {
		writeTestError(w, http.StatusNotFound, "job_not_found", fmt.Sprintf("%s has no job %q", a.Name, r.PathValue("job")))
		return
	}
	st.jobs = slices.Delete(st.jobs, i, i+1)
	w.WriteHeader(http.StatusNoContent)
}

func (tc *testController) restart(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type string `json:"type"`
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
	rel := st.releases[a.Release]
	if rel == nil {
		writeTestError(w, http.StatusUnprocessableEntity, "no_release", fmt.Sprintf("%s has no release yet: deploy it first", a.Name))
		return
	}
	if _, ok := rel.Processes[req.Type]; req.Type != "" && !ok {
		writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("release v%d of %s has no process type %q", rel.Version, a.Name, req.Type))
		return
	}
	for _, j := range st.jobs {
		if req.Type == "" || j.Type == req.Type {
			j.State = types.JobStopping
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

// routes returns a's routes, the default one first; tc.mu must be held.
func (tc *testController) routes(a *testApp) []*testRoute {
	routes := []*testRoute{}
	st := tc.run(a)
	if rel := st.releases[a.Release]; rel != nil {
		if _, ok := rel.Processes["web"]; ok {
			routes = append(routes, &testRoute{Domain: a.Name + ".localhost", App: a.Name, Default: true, CreatedAt: rel.CreatedAt})
		}
	}
	for _, d := range slices.Sorted(maps.Keys(st.routes)) {
		routes = append(routes, st.routes[d])
	}
	return routes
}

func (tc *testController) listRoutes(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if a, ok := tc.lookup(w, r); ok {
		writeTestJSON(w, http.StatusOK, tc.routes(a))
	}
}

func (tc *testController) addRoute(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Domain    string `json:"domain"`
		HTTPSOnly bool   `json:"https_only"`
		TLSCert   string `json:"tls_cert"`
		TLSKey    string `json:"tls_key"`
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
	if err := types.ValidateDomain(req.Domain); err != nil {
		writeTestError(w, http.StatusUnprocessableEntity, "invalid", apiMessage(err))
		return
	}
	for _, other := range tc.apps {
		for _, rt := range tc.routes(other) {
			if rt.Domain == req.Domain {
				writeTestError(w, http.StatusConflict, "conflict", fmt.Sprintf("%s already routes to %s", req.Domain, other.Name))
				return
			}
		}
	}
	rt := &testRoute{Domain: req.Domain, App: a.Name, HTTPSOnly: req.HTTPSOnly, CreatedAt: tc.now()}
	if req.TLSCert != "" || req.TLSKey != "" {
		pair, err := tls.X509KeyPair([]byte(req.TLSCert), []byte(req.TLSKey))
		if err != nil {
			writeTestError(w, http.StatusUnprocessableEntity, "invalid", "the certificate and key do not form a pair: "+err.Error())
			return
		}
		if err := pair.Leaf.VerifyHostname(strings.Replace(req.Domain, "*", "x", 1)); err != nil {
			writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("the certificate does not cover %s", req.Domain))
			return
		}
		rt.TLS, rt.CertNotAfter = true, pair.Leaf.NotAfter.UTC()
	} else if tc.acme {
		tc.obtainCert(rt)
	}
	tc.run(a).routes[req.Domain] = rt
	writeTestJSON(w, http.StatusCreated, rt)
}

func (tc *testController) removeRoute(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	d := r.PathValue("domain")
	if d == a.Name+".localhost" {
		writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("%s is the default route of %s and cannot be removed", d, a.Name))
		return
	}
	st := tc.run(a)
	if _, ok := st.routes[d]; !ok {
		writeTestError(w, http.StatusNotFound, "route_not_found", fmt.Sprintf("%s has no route %s", a.Name, d))
		return
	}
	delete(st.routes, d)
	w.WriteHeader(http.StatusNoContent)
}

// testCertPEM returns a self-signed certificate for domains, valid until
// 2027-01-02, and its private key, both PEM-encoded.
func testCertPEM(t *testing.T, domains ...string) (certPEM, keyPEM string) {
	t.Helper()
	return certPEMValid(t, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC), domains...)
}

// certPEMValid returns a self-signed certificate for domains, valid from
// notBefore to notAfter, and its private key, both PEM-encoded.
func certPEMValid(t *testing.T, notBefore, notAfter time.Time, domains ...string) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: domains[0]},
		DNSNames:     domains,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

// obtainCert gives rt the certificate state an ACME-enabled controller
// would show: domains starting with "issued." have a certificate,
// "unreachable." ones failed, the others but wildcards are pending.
func (tc *testController) obtainCert(rt *testRoute) {
	switch {
	case strings.HasPrefix(rt.Domain, "*."):
	case strings.HasPrefix(rt.Domain, "issued."):
		rt.CertState, rt.TLS, rt.CertNotAfter = types.CertIssued, true, tc.clock.AddDate(0, 3, 0)
	case strings.HasPrefix(rt.Domain, "unreachable."):
		rt.CertState = types.CertFailed
		rt.CertError = `connection: Get "http://` + rt.Domain + `/.well-known/acme-challenge/tok": dial tcp 127.0.0.2:80: connect: connection refused`
		rt.CertRetryAt = tc.clock.Add(time.Minute)
	default:
		rt.CertState = types.CertPending
	}
}
