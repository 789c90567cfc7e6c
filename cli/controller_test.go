package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/layer1/controller/types"
	"golang.org/x/crypto/ssh"
)

// testToken is the bearer token testController accepts.
const testToken = "test-token"

// testController is a small in-memory HTTP server speaking the controller's
// documented JSON (docs/API.md) for the endpoints the CLI uses. It is a seam
// the CLI tests own: the real controller needs PostgreSQL, and these tests
// check the CLI's side of the wire.
type testController struct {
	*httptest.Server

	mu    sync.Mutex
	clock time.Time
	seq   int
	// jobSeq numbers jobs.
	jobSeq int
	apps   map[string]*testApp
	keys   map[string]testKey
	// requests are the requests received, as "GET /v1/apps/demo/jobs".
	requests []string
	// acme makes routes added without a certificate get one, as with
	// ACME on (see obtainCert).
	acme bool
	// cluster makes GET /v1/hosts list hosts h2, h3 and h4 after h1, in
	// other states; without it the cluster has the one host h1.
	cluster bool
}

type testApp struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	CreatedAt time.Time         `json:"created_at"`
	GitURL    string            `json:"git_url"`
	WebURL    string            `json:"web_url"`
	URLs      []string          `json:"urls,omitempty"`
	Release   int               `json:"release"`
	HTTPSOnly bool              `json:"https_only"`
	config    map[string]string `json:"-"`
	run       *testRunState     `json:"-"`
}

type testKey struct {
	Fingerprint string    `json:"fingerprint"`
	Type        string    `json:"type"`
	Comment     string    `json:"comment"`
	Key         string    `json:"key"`
	CreatedAt   time.Time `json:"created_at"`
}

// newTestController starts an empty testController, closed at the end of the test.
func newTestController(t *testing.T) *testController {
	t.Helper()
	tc := &testController{
		clock: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		apps:  map[string]*testApp{},
		keys:  map[string]testKey{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /v1/info", tc.info)
	mux.HandleFunc("GET /v1/hosts", tc.hosts)
	mux.HandleFunc("POST /v1/hosts/{host}/drain", tc.drainHost)
	mux.HandleFunc("POST /v1/hosts/{host}/undrain", tc.undrainHost)
	mux.HandleFunc("DELETE /v1/hosts/{host}", tc.removeHost)
	mux.HandleFunc("POST /v1/gc", tc.gc)
	mux.HandleFunc("POST /v1/apps", tc.createApp)
	mux.HandleFunc("GET /v1/apps", tc.listApps)
	mux.HandleFunc("GET /v1/apps/{app}", tc.getApp)
	mux.HandleFunc("PATCH /v1/apps/{app}", tc.updateApp)
	mux.HandleFunc("DELETE /v1/apps/{app}", tc.deleteApp)
	mux.HandleFunc("GET /v1/apps/{app}/deploy", tc.getDeploySettings)
	mux.HandleFunc("GET /v1/apps/{app}/config", tc.getConfig)
	mux.HandleFunc("PATCH /v1/apps/{app}/config", tc.patchConfig)
	mux.HandleFunc("GET /v1/apps/{app}/metrics", tc.appMetrics)
	mux.HandleFunc("POST /v1/keys", tc.addKey)
	mux.HandleFunc("GET /v1/keys", tc.listKeys)
	mux.HandleFunc("DELETE /v1/keys/{fingerprint}", tc.removeKey)
	tc.handleRunning(mux)
	tc.Server = httptest.NewServer(tc.auth(mux))
	t.Cleanup(tc.Close)
	return tc
}

// seed adds the apps and keys the golden tests print.
func (tc *testController) seed(t *testing.T) {
	t.Helper()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	demo := tc.newApp("demo")
	demo.Release = 3
	demo.config = map[string]string{
		"DATABASE_URL":    "postgres://db.internal/demo",
		"WEB_CONCURRENCY": "2",
		"QUERY":           "a=b&c=d",
	}
	tc.newApp("api")
	for i, comment := range []string{"me@laptop", ""} {
		pub := testPublicKey(t, byte(i+1))
		line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
		if comment != "" {
			line += " " + comment
		}
		k := testKey{
			Fingerprint: ssh.FingerprintSHA256(pub),
			Type:        pub.Type(),
			Comment:     comment,
			Key:         line,
			CreatedAt:   tc.now(),
		}
		tc.keys[k.Fingerprint] = k
	}
	tc.seedRunning(demo)
}

// received returns the requests received so far.
func (tc *testController) received() []string {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return slices.Clone(tc.requests)
}

// now returns the controller's clock and advances it by a minute, so that
// every timestamp is distinct and reproducible.
func (tc *testController) now() time.Time {
	t := tc.clock
	tc.clock = tc.clock.Add(time.Minute)
	return t
}

// newApp adds an app; tc.mu must be held.
func (tc *testController) newApp(name string) *testApp {
	tc.seq++
	a := &testApp{
		ID:        fmt.Sprintf("00000000-0000-4000-8000-%012d", tc.seq),
		Name:      name,
		CreatedAt: tc.now(),
		GitURL:    "ssh://git@127.0.0.1:2222/" + name + ".git",
		WebURL:    "http://" + name + ".localhost:8080",
		URLs:      []string{"http://" + name + ".localhost:8080", "https://" + name + ".localhost:8443"},
		config:    map[string]string{},
	}
	if types.IsSystemAppName(name) {
		// As the controller: a system app has no web process, so no web
		// URL.
		a.WebURL, a.URLs = "", nil
	}
	tc.apps[name] = a
	return a
}

func (tc *testController) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tc.mu.Lock()
		tc.requests = append(tc.requests, r.Method+" "+r.URL.Path)
		tc.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			writeTestError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeTestJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeTestError(w http.ResponseWriter, status int, code, msg string) {
	writeTestJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// decodeTestBody decodes a JSON request body strictly, as the controller does.
func decodeTestBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeTestError(w, http.StatusBadRequest, "bad_request", "malformed JSON: "+err.Error())
		return false
	}
	return true
}

func (tc *testController) info(w http.ResponseWriter, _ *http.Request) {
	writeTestJSON(w, http.StatusOK, map[string]string{
		"version": "0.1.0", "cluster": "c-test", "domain": "localhost",
		"git_url": "ssh://git@127.0.0.1:2222", "router_http": "http://localhost:8080",
		"router_https": "https://localhost:8443",
	})
}

// hosts answers one host, its state disk past the controller's warning
// threshold, which is not the default.
func (tc *testController) hosts(w http.ResponseWriter, _ *http.Request) {
	hosts := []map[string]any{{
		"id": "h1", "addr": "127.0.0.1", "state": "up", "healthy": true, "jobs": 3, "version": "0.1.0", "started_at": "2026-01-02T03:00:00Z",
		"etcd_member": true, "last_heartbeat": "2026-01-02T03:59:57Z",
		"usage": map[string]any{"at": "2026-01-02T03:04:00Z", "cpu": 0.25, "cores": 2, "memory_used": 3 << 30, "memory_total": 8 << 30,
			"disks": []map[string]any{
				{"path": "/var/lib/gantry", "used": 45 << 30, "total": 50 << 30},
				{"path": "/var/lib/docker", "used": 12 << 30, "total": 100 << 30},
			},
			"disk_warning_percent": 88,
		},
	}, {
		"id": "h2", "addr": "127.0.0.2", "state": "draining", "healthy": true, "drain": true, "jobs": 1, "started_at": "2026-01-02T03:00:00Z",
		"last_heartbeat": "2026-01-02T03:59:59Z",
		"usage": map[string]any{"at": "2026-01-02T03:04:00Z", "cpu": 1.5, "cores": 4, "memory_used": 1 << 30, "memory_total": 16 << 30,
			"disks": []map[string]any{}},
	}, {
		"id": "h3", "addr": "", "state": "down", "healthy": false, "jobs": 2,
	}, {
		"id": "h4", "addr": "127.0.0.4", "state": "unhealthy", "healthy": false, "reason": "Docker is unreachable", "jobs": 0,
		"started_at": "2026-01-02T03:00:00Z", "last_heartbeat": "2026-01-02T03:58:00Z",
	}}
	if !tc.cluster {
		hosts = hosts[:1]
	}
	writeTestJSON(w, http.StatusOK, hosts)
}

// hostNotFound answers the 404 of a host the cluster does not know.
func hostNotFound(w http.ResponseWriter, r *http.Request) {
	writeTestError(w, http.StatusNotFound, "host_not_found", fmt.Sprintf("no host %q in the cluster; gantry hosts lists them", r.PathValue("host")))
}

// drainHost drains h1 (one of its jobs cannot move), h2 and h4; it
// refuses "last", whose jobs have nowhere to go.
func (tc *testController) drainHost(w http.ResponseWriter, r *http.Request) {
	switch id := r.PathValue("host"); id {
	case "h1":
		writeTestJSON(w, http.StatusOK, map[string]any{"host": id, "drain": true, "jobs": 3,
			"stuck": []map[string]any{{"job": "demo.web.2.0a1b2c3d4e5f", "app": "demo", "type": "web", "index": 2}}})
	case "h2", "h4":
		writeTestJSON(w, http.StatusOK, map[string]any{"host": id, "drain": true, "jobs": 0, "stuck": []any{}})
	case "last":
		writeTestError(w, http.StatusConflict, "conflict",
			`no other host can run jobs (none is up, healthy and not drained): draining "last" would leave its 2 jobs nowhere to go; it stays as it is. Add a host, or undrain one, first`)
	default:
		hostNotFound(w, r)
	}
}

func (tc *testController) undrainHost(w http.ResponseWriter, r *http.Request) {
	switch id := r.PathValue("host"); id {
	case "h1", "h2", "h3", "h4":
		writeTestJSON(w, http.StatusOK, map[string]any{"host": id, "drain": false, "jobs": 0, "stuck": []any{}})
	default:
		hostNotFound(w, r)
	}
}

// removeHost removes h3, which is down; "slow" too, without the
// scheduler's answer in time; the hosts that are up are refused.
func (tc *testController) removeHost(w http.ResponseWriter, r *http.Request) {
	switch id := r.PathValue("host"); id {
	case "h3":
		writeTestJSON(w, http.StatusOK, map[string]any{"host": id, "jobs": 2, "done": true})
	case "slow":
		writeTestJSON(w, http.StatusAccepted, map[string]any{"host": id, "jobs": 1, "done": false})
	case "h5":
		writeTestJSON(w, http.StatusOK, map[string]any{"host": id, "jobs": 0, "done": true, "etcd_member_removed": true, "etcd_members": 2})
	case "h6":
		writeTestError(w, http.StatusConflict, "conflict", fmt.Sprintf(
			"host %q runs the last voting member of the cluster's etcd: removing it would leave the cluster without its state; it stays as it is", id))
	case "h1", "h2", "h4":
		writeTestError(w, http.StatusConflict, "conflict", fmt.Sprintf(
			"host %q is up (its agent heartbeats): only a host that is down can be removed. To take it out, drain it (gantry host drain %s), stop its agent, then remove it", id, id))
	default:
		hostNotFound(w, r)
	}
}

// gc answers a fixed report.
func (tc *testController) gc(w http.ResponseWriter, _ *http.Request) {
	writeTestJSON(w, http.StatusOK, map[string]any{
		"started_at": "2026-01-02T03:04:05Z", "seconds": 1.25, "slugs": 3, "blobs": 2, "large_objects": 0, "etcd_revision": 42,
		"hosts": []map[string]any{{"host": "h1", "containers": 1, "volumes": 2, "images": 0, "artifacts": 4}},
	})
}

func (tc *testController) createApp(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if !decodeTestBody(w, r, &req) {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if req.Name == "" {
		req.Name = fmt.Sprintf("generated-%d", tc.seq+1)
	}
	if types.ValidateAppName(req.Name) != nil {
		writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("invalid app name %q", req.Name))
		return
	}
	if _, ok := tc.apps[req.Name]; ok {
		writeTestError(w, http.StatusConflict, "conflict", fmt.Sprintf("an app named %q already exists", req.Name))
		return
	}
	writeTestJSON(w, http.StatusCreated, tc.newApp(req.Name))
}

func (tc *testController) listApps(w http.ResponseWriter, _ *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	apps := []*testApp{}
	for _, name := range slices.Sorted(maps.Keys(tc.apps)) {
		apps = append(apps, tc.apps[name])
	}
	writeTestJSON(w, http.StatusOK, apps)
}

// lookup returns the app of the request path or writes a 404; tc.mu must be held.
func (tc *testController) lookup(w http.ResponseWriter, r *http.Request) (*testApp, bool) {
	a, ok := tc.apps[r.PathValue("app")]
	if !ok {
		writeTestError(w, http.StatusNotFound, "app_not_found", fmt.Sprintf("no app named %q", r.PathValue("app")))
	}
	return a, ok
}

func (tc *testController) getApp(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if a, ok := tc.lookup(w, r); ok {
		writeTestJSON(w, http.StatusOK, a)
	}
}

// updateApp sets the app's https_only, as the controller does.
func (tc *testController) updateApp(w http.ResponseWriter, r *http.Request) {
	var req types.UpdateAppRequest
	if !decodeTestBody(w, r, &req) {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	if req.HTTPSOnly == nil {
		writeTestError(w, http.StatusUnprocessableEntity, "invalid", "the body changes nothing")
		return
	}
	a.HTTPSOnly = *req.HTTPSOnly
	writeTestJSON(w, http.StatusOK, a)
}

// appMetrics answers an hour of figures for demo, made up from testNow
// backwards: a request rate that grows, two 5xx bursts, latencies, and the
// web type's CPU and memory. Other apps have none.
func (tc *testController) appMetrics(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	m := types.AppMetrics{App: a.Name, Since: "1h0m0s", Step: "10s", Series: []types.MetricSeries{}}
	if a.Name == "demo" {
		series := func(name, typ string, f func(i int) float64) {
			s := types.MetricSeries{Name: name, Type: typ}
			for i := 0; i < 360; i += 3 {
				s.Points = append(s.Points, types.MetricPoint{Time: testNow.Add(time.Duration(i-360) * 10 * time.Second), Value: f(i)})
			}
			m.Series = append(m.Series, s)
		}
		series(types.MetricCPU, "web", func(i int) float64 { return 0.1 + float64(i%60)/300 })
		series(types.MetricMemory, "web", func(int) float64 { return 48 << 20 })
		series(types.MetricRequests, "", func(i int) float64 { return float64(i) / 10 })
		series(types.MetricErrors, "", func(i int) float64 { return float64(i % 120 / 117 * 3) })
		series(types.MetricP50, "", func(int) float64 { return 0.004 })
		series(types.MetricP95, "", func(i int) float64 { return 0.02 + float64(i)/36000 })
		series(types.MetricP99, "", func(int) float64 { return 1.25 })
	}
	writeTestJSON(w, http.StatusOK, m)
}

// getDeploySettings answers the defaults: every test app deploys one by
// one with the controller's timeout.
func (tc *testController) getDeploySettings(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if a, ok := tc.lookup(w, r); ok {
		writeTestJSON(w, http.StatusOK, types.DeploySettings{App: a.Name, Strategy: types.StrategyOneByOne, Timeout: 120, TimeoutDefault: true})
	}
}

func (tc *testController) deleteApp(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if a, ok := tc.lookup(w, r); ok {
		delete(tc.apps, a.Name)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (tc *testController) getConfig(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if a, ok := tc.lookup(w, r); ok {
		writeTestJSON(w, http.StatusOK, a.config)
	}
}

func (tc *testController) patchConfig(w http.ResponseWriter, r *http.Request) {
	var changes map[string]*string
	if !decodeTestBody(w, r, &changes) {
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	a, ok := tc.lookup(w, r)
	if !ok {
		return
	}
	for k := range changes {
		if !types.ConfigVarNameRegexp.MatchString(k) {
			writeTestError(w, http.StatusUnprocessableEntity, "invalid", fmt.Sprintf("invalid config var name %q", k))
			return
		}
	}
	for k, v := range changes {
		if v == nil {
			delete(a.config, k)
		} else {
			a.config[k] = *v
		}
	}
	writeTestJSON(w, http.StatusOK, a.config)
}

func (tc *testController) addKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key string `json:"key"`
	}
	if !decodeTestBody(w, r, &req) {
		return
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(req.Key))
	if err != nil {
		writeTestError(w, http.StatusUnprocessableEntity, "invalid", "the key does not parse")
		return
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	fp := ssh.FingerprintSHA256(pub)
	if _, ok := tc.keys[fp]; ok {
		writeTestError(w, http.StatusConflict, "conflict", fmt.Sprintf("key %s is already registered", fp))
		return
	}
	k := testKey{Fingerprint: fp, Type: pub.Type(), Comment: comment, Key: req.Key, CreatedAt: tc.now()}
	tc.keys[fp] = k
	writeTestJSON(w, http.StatusCreated, k)
}

func (tc *testController) listKeys(w http.ResponseWriter, _ *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	keys := []testKey{}
	for _, fp := range slices.Sorted(maps.Keys(tc.keys)) {
		keys = append(keys, tc.keys[fp])
	}
	writeTestJSON(w, http.StatusOK, keys)
}

func (tc *testController) removeKey(w http.ResponseWriter, r *http.Request) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	fp := r.PathValue("fingerprint")
	if _, ok := tc.keys[fp]; !ok {
		writeTestError(w, http.StatusNotFound, "key_not_found", fmt.Sprintf("no key with fingerprint %s", fp))
		return
	}
	delete(tc.keys, fp)
	w.WriteHeader(http.StatusNoContent)
}
