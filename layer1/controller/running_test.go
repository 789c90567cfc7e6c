package controller_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/types"
	routertypes "github.com/gantryhq/gantry/router/types"
)

// kvs returns the etcd keys and values under prefix.
func (a *api) kvs(t *testing.T, prefix string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	resp, err := a.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// formations returns the formations of app in etcd, keyed "v<version>/<type>".
func (a *api) formations(t *testing.T, app string) map[string]keyspace.Formation {
	t.Helper()
	out := map[string]keyspace.Formation{}
	for k, v := range a.kvs(t, a.space.AppFormations(app)) {
		var f keyspace.Formation
		if err := json.Unmarshal([]byte(v), &f); err != nil {
			t.Fatalf("formation %s: %v", k, err)
		}
		if k != a.space.Formation(f.App, f.Release, f.Type) {
			t.Errorf("formation %+v under key %s", f, k)
		}
		out[fmt.Sprintf("v%d/%s", f.Template.ReleaseVersion, f.Type)] = f
	}
	return out
}

// counts returns the counts of formations, keyed like them.
func counts(fs map[string]keyspace.Formation) map[string]int {
	out := map[string]int{}
	for k, f := range fs {
		out[k] = f.Count
	}
	return out
}

// routes returns the routes in etcd, by domain.
func (a *api) routes(t *testing.T) map[string]routertypes.Route {
	t.Helper()
	out := map[string]routertypes.Route{}
	for k, v := range a.kvs(t, a.space.Routes()) {
		var r routertypes.Route
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			t.Fatalf("route %s: %v", k, err)
		}
		if err := r.Validate(); err != nil {
			t.Errorf("route %s: %v", k, err)
		}
		out[keyspace.Last(k)] = r
	}
	return out
}

// put writes v as JSON under key, as another component of the cluster would.
func (a *api) put(t *testing.T, key string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := a.etcd.Put(ctx, key, string(b)); err != nil {
		t.Fatal(err)
	}
}

func (a *api) del(t *testing.T, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := a.etcd.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
}

// queryRow scans one row of query into dest.
func (a *api) queryRow(t *testing.T, query string, dest ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), a.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(t.Context(), query).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// rawCase is one request sent without the typed client and the error it
// must get.
type rawCase struct {
	name, method, path, body string
	status                   int
	code, msg                string
}

// runRaw sends each case and checks the error answer.
func (a *api) runRaw(t *testing.T, cases []rawCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := a.raw(t, tt.method, tt.path, tt.body, "Bearer "+a.token)
			var eb types.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
				t.Fatalf("%d %s is not an error body: %v", resp.StatusCode, body, err)
			}
			if resp.StatusCode != tt.status || eb.Error.Code != tt.code || !strings.Contains(eb.Error.Message, tt.msg) {
				t.Errorf("%d %+v, want %d %s with a message containing %q", resp.StatusCode, eb.Error, tt.status, tt.code, tt.msg)
			}
		})
	}
}

func webRelease(image string) types.ReleaseRequest {
	return types.ReleaseRequest{Image: image, Processes: map[string]types.Process{
		"web": {Command: "/server", HealthPath: "/healthz"},
	}}
}

func TestCreateRelease(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"GREETING": ptr("hi")}); err != nil {
		t.Fatal(err)
	}
	if rels, _ := a.c.ListReleases(ctx, "demo"); len(rels) != 0 {
		t.Fatalf("a config change without a release made releases: %+v", rels)
	}
	const p = "/v1/apps/demo/releases"
	release := func(image, processes string) string {
		return `{"image": "` + image + `", "processes": ` + processes + `}`
	}
	web := `{"web": {"command": "/server"}}`
	a.runRaw(t, []rawCase{
		{"malformed JSON", "POST", p, `{"image": `, 400, "bad_request", "malformed JSON"},
		{"unknown field", "POST", p, `{"image": "demo:v1", "cmd": "/server"}`, 400, "bad_request", `unknown field "cmd"`},
		{"processes not an object", "POST", p, release("demo:v1", `["web"]`), 400, "bad_request", `field "processes"`},
		{"no body", "POST", p, ``, 400, "bad_request", "body is empty"},
		{"no image", "POST", p, release("", web), 422, "invalid", "no image"},
		{"upper-case image", "POST", p, release("Demo:v1", web), 422, "invalid", `invalid image reference "Demo:v1": invalid reference format: repository name (library/Demo) must be lowercase`},
		{"empty tag", "POST", p, release("demo:", web), 422, "invalid", `invalid image reference "demo:"`},
		{"space in image", "POST", p, release("demo v1", web), 422, "invalid", `invalid image reference "demo v1"`},
		{"bad digest", "POST", p, release("demo@sha256:xyz", web), 422, "invalid", `invalid image reference`},
		{"no processes", "POST", p, release("demo:v1", `{}`), 422, "invalid", "no process"},
		{"bad type", "POST", p, release("demo:v1", `{"Web": {"command": "/server"}}`), 422, "invalid", `invalid process type "Web"`},
		{"empty command", "POST", p, release("demo:v1", `{"web": {"command": " "}}`), 422, "invalid", "process web: the command is empty"},
		{"unterminated quote", "POST", p, release("demo:v1", `{"web": {"command": "/server 'x"}}`), 422, "invalid",
			"process web: command \"/server 'x\": unterminated quoting at byte 8: single quote not closed"},
		{"shell syntax", "POST", p, release("demo:v1", `{"web": {"command": "/server | tee log"}}`), 422, "invalid", "runs only in a shell; commands run without a shell"},
		{"health on a worker", "POST", p, release("demo:v1", `{"worker": {"command": "/w", "health_path": "/h"}}`), 422, "invalid",
			"process worker: a health check path applies only to web processes"},
		{"relative health path", "POST", p, release("demo:v1", `{"web": {"command": "/s", "health_path": "healthz"}}`), 422, "invalid",
			`the health check path "healthz" does not start with /`},
		{"health path with a space", "POST", p, release("demo:v1", `{"web": {"command": "/s", "health_path": "/a b"}}`), 422, "invalid", "holds a space"},
		{"unknown app", "POST", "/v1/apps/nope/releases", release("demo:v1", web), 404, "app_not_found", `no app named "nope"`},
	})
	if rels, _ := a.c.ListReleases(ctx, "demo"); len(rels) != 0 {
		t.Fatalf("refused requests made releases: %+v", rels)
	}
	if kvs := a.kvs(t, a.space.Root()); len(kvs) != 0 {
		t.Fatalf("refused requests wrote to etcd: %v", kvs)
	}

	rel, err := a.c.CreateRelease(ctx, "demo", types.ReleaseRequest{
		Image: "demo:v1",
		Processes: map[string]types.Process{
			"web":    {Command: `/server --greeting "hello world" $PORT`, HealthPath: "/healthz"},
			"worker": {Command: "/worker"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != 1 || rel.App != "demo" || rel.Image != "demo:v1" || rel.Description != "image demo:v1" ||
		!maps.Equal(rel.Config, map[string]string{"GREETING": "hi"}) || len(rel.Processes) != 2 {
		t.Errorf("CreateRelease = %+v", rel)
	}
	if app, err := a.c.GetApp(ctx, "demo"); err != nil || app.Release != 1 {
		t.Errorf("GetApp after the first release = %+v, %v; want release 1", app, err)
	}
	f, err := a.c.GetFormation(ctx, "demo")
	if err != nil || f.Release != 1 || !maps.Equal(f.Processes, map[string]int{"web": 1, "worker": 0}) {
		t.Errorf("GetFormation = %+v, %v; want web=1 worker=0 on v1", f, err)
	}
	fs := a.formations(t, "demo")
	if len(fs) != 1 {
		t.Fatalf("etcd formations = %v, want only v1/web (worker has count 0)", counts(fs))
	}
	got := fs["v1/web"]
	want := keyspace.Formation{
		App: "demo", Release: rel.ID, Type: "web", Count: 1,
		Template: keyspace.JobSpec{
			App: "demo", Release: rel.ID, ReleaseVersion: 1, Type: "web", Image: "demo:v1",
			Cmd:     []string{"/server", "--greeting", "hello world", "$PORT"},
			Env:     map[string]string{"GREETING": "hi"},
			Port:    types.WebPort,
			Service: "demo-web",
			Health:  keyspace.HealthCheck{Path: "/healthz"},
		},
		UpdatedAt: got.UpdatedAt,
	}
	if gotJSON, wantJSON := mustMarshal(t, got), mustMarshal(t, want); gotJSON != wantJSON || got.UpdatedAt.IsZero() {
		t.Errorf("etcd formation\n got %s\nwant %s", gotJSON, wantJSON)
	}
	wantRoutes := map[string]routertypes.Route{"demo.localhost": {Domain: "demo.localhost", App: "demo", Service: "demo-web"}}
	if routes := a.routes(t); !maps.Equal(routes, wantRoutes) {
		t.Errorf("etcd routes = %+v, want %+v", routes, wantRoutes)
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFormation(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(c *controller.Config) { c.MaxProcessCount = 10 })
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	_, err := a.c.GetFormation(ctx, "demo")
	wantAPIError(t, err, types.ErrNoRelease, `app "demo" has no release yet`)
	_, err = a.c.Scale(ctx, "demo", map[string]int{"web": 1})
	wantAPIError(t, err, types.ErrNoRelease, `app "demo" has no release yet`)
	_, err = a.c.GetFormation(ctx, "nope")
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)

	if _, err := a.c.CreateRelease(ctx, "demo", types.ReleaseRequest{Image: "demo:v1", Processes: map[string]types.Process{
		"web": {Command: "/server"}, "worker": {Command: "/worker"},
	}}); err != nil {
		t.Fatal(err)
	}
	const p = "/v1/apps/demo/formation"
	a.runRaw(t, []rawCase{
		{"malformed JSON", "PUT", p, `{"web": `, 400, "bad_request", "malformed JSON"},
		{"array", "PUT", p, `["web"]`, 400, "bad_request", "want an object"},
		{"null", "PUT", p, `null`, 400, "bad_request", "JSON object of process counts"},
		{"string count", "PUT", p, `{"web": "2"}`, 400, "bad_request", `field "web": got a JSON string, want an integer`},
		{"fractional count", "PUT", p, `{"web": 1.5}`, 400, "bad_request", "want an integer"},
		{"null count", "PUT", p, `{"web": null}`, 400, "bad_request", `field "web": got a JSON null`},
		{"huge count", "PUT", p, `{"web": 1e30}`, 400, "bad_request", "want an integer"},
		{"negative", "PUT", p, `{"web": 2, "worker": -1}`, 422, "invalid", "worker=-1: a count cannot be negative"},
		{"above the cap", "PUT", p, `{"web": 11}`, 422, "invalid", "web=11: the limit is 10 processes per type"},
		{"absurd", "PUT", p, `{"web": 2147483648}`, 422, "invalid", "the limit is 10"},
		{"unknown type", "PUT", p, `{"web": 2, "clock": 1}`, 422, "invalid", `release v1 has no process type "clock" (it has web, worker)`},
		{"wrong method", "POST", p, `{}`, 405, "method_not_allowed", "use GET, HEAD, PUT"},
		{"unknown app", "PUT", "/v1/apps/nope/formation", `{"web": 1}`, 404, "app_not_found", `no app named "nope"`},
	})
	f, err := a.c.GetFormation(ctx, "demo")
	if err != nil || !maps.Equal(f.Processes, map[string]int{"web": 1, "worker": 0}) {
		t.Fatalf("after refused changes: %+v, %v; want web=1 worker=0", f, err)
	}
	if c := counts(a.formations(t, "demo")); !maps.Equal(c, map[string]int{"v1/web": 1}) {
		t.Fatalf("etcd after refused changes: %v", c)
	}

	steps := []struct {
		name  string
		scale map[string]int
		want  map[string]int // the API's formation
		etcd  map[string]int // the mirrored counts
	}{
		{"scale up both", map[string]int{"web": 3, "worker": 2}, map[string]int{"web": 3, "worker": 2}, map[string]int{"v1/web": 3, "v1/worker": 2}},
		{"others keep their count", map[string]int{"worker": 10}, map[string]int{"web": 3, "worker": 10}, map[string]int{"v1/web": 3, "v1/worker": 10}},
		{"zero removes the key", map[string]int{"web": 0}, map[string]int{"web": 0, "worker": 10}, map[string]int{"v1/worker": 10}},
		{"nothing", map[string]int{}, map[string]int{"web": 0, "worker": 10}, map[string]int{"v1/worker": 10}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			f, err := a.c.Scale(ctx, "demo", st.scale)
			if err != nil {
				t.Fatal(err)
			}
			if f.App != "demo" || f.Release != 1 || !maps.Equal(f.Processes, st.want) || f.UpdatedAt.IsZero() {
				t.Errorf("Scale = %+v, want %v", f, st.want)
			}
			if got, _ := a.c.GetFormation(ctx, "demo"); !maps.Equal(got.Processes, st.want) {
				t.Errorf("GetFormation = %+v, want %v", got, st.want)
			}
			if c := counts(a.formations(t, "demo")); !maps.Equal(c, st.etcd) {
				t.Errorf("etcd counts = %v, want %v", c, st.etcd)
			}
		})
	}
}

// deployment returns the status and error of the deployment of version.
func (a *api) deployment(t *testing.T, app string, version int) (status, reason string) {
	t.Helper()
	a.queryRow(t, fmt.Sprintf(`SELECT d.status, d.error FROM deployments d JOIN releases r ON r.id = d.new_release_id
		JOIN apps a ON a.id = d.app_id WHERE a.name = '%s' AND r.version = %d`, app, version), &status, &reason)
	return status, reason
}

// reportJob writes a job state as the host agent running it would.
func (a *api) reportJob(t *testing.T, st keyspace.JobState) {
	t.Helper()
	if st.HostID == "" {
		st.HostID = "host-1"
	}
	st.UpdatedAt = time.Now().UTC()
	a.put(t, a.space.Job(st.JobID), st)
}

func TestJobs(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	for _, app := range []string{"demo", "other"} {
		if _, err := a.c.CreateApp(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	v1, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if jobs, err := a.c.ListJobs(ctx, "demo"); err != nil || jobs == nil || len(jobs) != 0 {
		t.Fatalf("ListJobs before any job = %#v, %v; want an empty list", jobs, err)
	}
	placed := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	started := placed.Add(time.Second)
	exit := 2
	assign := func(id, typ string, index, restarts int) {
		a.put(t, a.space.Assignment("host-1", id), keyspace.Assignment{JobID: id, HostID: "host-1", Index: index, Restarts: restarts,
			CreatedAt: placed, Spec: keyspace.JobSpec{App: strings.Split(id, ".")[0], Release: v1.ID, ReleaseVersion: 1, Type: typ}})
	}
	assign("demo.web.2.bbbbbbbbbbbb", "web", 2, 0)
	assign("demo.web.1.aaaaaaaaaaaa", "web", 1, 0)
	assign("demo.worker.1.cccccccccccc", "worker", 1, 3)
	assign("other.web.1.dddddddddddd", "web", 1, 0)
	a.put(t, a.space.Job("demo.web.1.aaaaaaaaaaaa"), keyspace.JobState{JobID: "demo.web.1.aaaaaaaaaaaa", HostID: "host-1", App: "demo",
		Release: v1.ID, Type: "web", State: keyspace.StateUp, Addr: "127.0.0.1:49153", StartedAt: started, UpdatedAt: started})
	a.put(t, a.space.Job("demo.worker.1.cccccccccccc"), keyspace.JobState{JobID: "demo.worker.1.cccccccccccc", HostID: "host-1", App: "demo",
		Release: v1.ID, Type: "worker", State: keyspace.StateCrashed, ExitCode: &exit, LastLines: []string{"boom"}, StartedAt: started, UpdatedAt: started})
	// A job whose assignment is gone, still stopping on its host.
	a.put(t, a.space.Job("demo.web.3.eeeeeeeeeeee"), keyspace.JobState{JobID: "demo.web.3.eeeeeeeeeeee", HostID: "host-2", App: "demo",
		Release: v1.ID, Type: "web", State: keyspace.StateStopping, StartedAt: started, UpdatedAt: started})

	jobs, err := a.c.ListJobs(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	want := []types.Job{
		{ID: "demo.web.1.aaaaaaaaaaaa", App: "demo", Release: 1, Type: "web", Index: 1, Host: "host-1", State: types.JobUp,
			Addr: "127.0.0.1:49153", StartedAt: started, UpdatedAt: started},
		{ID: "demo.web.2.bbbbbbbbbbbb", App: "demo", Release: 1, Type: "web", Index: 2, Host: "host-1", State: types.JobPending, UpdatedAt: placed},
		{ID: "demo.web.3.eeeeeeeeeeee", App: "demo", Release: 1, Type: "web", Index: 3, Host: "host-2", State: types.JobStopping,
			StartedAt: started, UpdatedAt: started},
		{ID: "demo.worker.1.cccccccccccc", App: "demo", Release: 1, Type: "worker", Index: 1, Host: "host-1", State: types.JobCrashed,
			StartedAt: started, UpdatedAt: started, Restarts: 3, ExitCode: &exit, LastLines: []string{"boom"},
			LastExit: &types.JobExit{ExitCode: &exit, At: started, LastLines: []string{"boom"}}},
	}
	if got, w := mustMarshal(t, jobs), mustMarshal(t, want); got != w {
		t.Errorf("ListJobs\n got %s\nwant %s", got, w)
	}
	// The wire shape: absent fields are left out.
	_, body := a.raw(t, "GET", "/v1/apps/demo/jobs", "", "Bearer "+a.token)
	var wire []map[string]any
	if err := json.Unmarshal(body, &wire); err != nil || len(wire) != 4 {
		t.Fatalf("GET jobs = %s", body)
	}
	for _, field := range []string{"addr", "started_at", "exit_code", "error", "last_lines"} {
		if _, ok := wire[1][field]; ok {
			t.Errorf("a pending job has %q: %s", field, body)
		}
	}

	_, err = a.c.ListJobs(ctx, "nope")
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)
	wantAPIError(t, a.c.KillJob(ctx, "nope", "nope.web.1.x"), types.ErrAppNotFound, `no app named "nope"`)
	wantAPIError(t, a.c.KillJob(ctx, "demo", "demo.web.9.ffffffffffff"), types.ErrJobNotFound, `app "demo" has no job "demo.web.9.ffffffffffff"`)
	wantAPIError(t, a.c.KillJob(ctx, "demo", "other.web.1.dddddddddddd"), types.ErrJobNotFound, `app "demo" has no job`)
	wantAPIError(t, a.c.KillJob(ctx, "demo", "demo.web.2.bbbbbbbbbbbb"), types.ErrConflict, "has not started yet")
	wantAPIError(t, a.c.KillJob(ctx, "demo", "demo.web.1.aaaaaaaaaaaa"), types.ErrUnavailable, "host host-1 of job demo.web.1.aaaaaaaaaaaa is not reporting")
	a.put(t, a.space.Host("host-1"), keyspace.Host{ID: "host-1", APIURL: "http://" + testenv.FreeAddr(t), Healthy: true})
	wantAPIError(t, a.c.KillJob(ctx, "demo", "demo.web.1.aaaaaaaaaaaa"), types.ErrUnavailable, "cannot reach the agent of host host-1")
}

func TestRestart(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, a.c.Restart(ctx, "demo", ""), types.ErrNoRelease, "no release yet")
	if _, err := a.c.CreateRelease(ctx, "demo", types.ReleaseRequest{Image: "demo:v1", Processes: map[string]types.Process{
		"web": {Command: "/server"}, "worker": {Command: "/worker"},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Scale(ctx, "demo", map[string]int{"worker": 1}); err != nil {
		t.Fatal(err)
	}
	a.runRaw(t, []rawCase{
		{"unknown type", "POST", "/v1/apps/demo/restart", `{"type": "clock"}`, 422, "invalid", `no process type "clock" (it has web, worker)`},
		{"invalid type", "POST", "/v1/apps/demo/restart", `{"type": "Web!"}`, 422, "invalid", `invalid process type "Web!"`},
		{"type not a string", "POST", "/v1/apps/demo/restart", `{"type": 1}`, 400, "bad_request", `field "type"`},
		{"unknown app", "POST", "/v1/apps/nope/restart", `{}`, 404, "app_not_found", `no app named "nope"`},
	})
	for _, f := range a.formations(t, "demo") {
		if !f.RestartedAt.IsZero() {
			t.Fatalf("refused restarts restarted %s", f.Type)
		}
	}
	before := time.Now().Add(-time.Minute)
	if err := a.c.Restart(ctx, "demo", "web"); err != nil {
		t.Fatal(err)
	}
	fs := a.formations(t, "demo")
	if fs["v1/web"].RestartedAt.Before(before) || !fs["v1/worker"].RestartedAt.IsZero() {
		t.Errorf("after restarting web: web %s, worker %s", fs["v1/web"].RestartedAt, fs["v1/worker"].RestartedAt)
	}
	// An empty body restarts every type.
	if resp, body := a.raw(t, "POST", "/v1/apps/demo/restart", "", "Bearer "+a.token); resp.StatusCode != 202 {
		t.Fatalf("POST restart without a body = %d %s", resp.StatusCode, body)
	}
	fs = a.formations(t, "demo")
	if fs["v1/worker"].RestartedAt.Before(before) || fs["v1/web"].RestartedAt.Before(before) {
		t.Errorf("after restarting all: %+v", fs)
	}
}

// newCert returns a self-signed PEM certificate for names, valid until
// notAfter, and its PEM key.
func newCert(t *testing.T, names []string, notAfter time.Time) (certPEM, keyPEM string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	for _, app := range []string{"demo", "other"} {
		if _, err := a.c.CreateApp(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	if routes, err := a.c.ListRoutes(ctx, "demo"); err != nil || routes == nil || len(routes) != 0 {
		t.Fatalf("ListRoutes without a release = %#v, %v; want an empty list", routes, err)
	}
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v1")); err != nil {
		t.Fatal(err)
	}
	// A release without a web process has no default route.
	if _, err := a.c.CreateRelease(ctx, "other", types.ReleaseRequest{Image: "other:v1", Processes: map[string]types.Process{"worker": {Command: "/w"}}}); err != nil {
		t.Fatal(err)
	}
	if routes, err := a.c.ListRoutes(ctx, "other"); err != nil || len(routes) != 0 {
		t.Errorf("ListRoutes of an app without web = %+v, %v", routes, err)
	}

	expiry := time.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Second)
	wildCert, wildKey := newCert(t, []string{"*.example.test"}, expiry)
	wwwCert, wwwKey := newCert(t, []string{"www.example.test", "example.test"}, expiry)
	_, otherKey := newCert(t, []string{"www.example.test"}, expiry)
	oldCert, oldKey := newCert(t, []string{"old.example.test"}, time.Now().Add(-time.Hour))

	added, err := a.c.AddRoute(ctx, "demo", types.RouteRequest{Domain: "www.example.test", HTTPSOnly: true, TLSCert: wwwCert, TLSKey: wwwKey})
	if err != nil {
		t.Fatal(err)
	}
	if added.Domain != "www.example.test" || added.App != "demo" || added.Default || !added.HTTPSOnly || !added.TLS ||
		!added.CertNotAfter.Equal(expiry) || added.CreatedAt.IsZero() {
		t.Errorf("AddRoute = %+v", added)
	}
	if _, err := a.c.AddRoute(ctx, "demo", types.RouteRequest{Domain: "*.example.test", TLSCert: wildCert, TLSKey: wildKey}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.AddRoute(ctx, "demo", types.RouteRequest{Domain: "plain.example.org"}); err != nil {
		t.Fatal(err)
	}

	route := func(domain string, cert, key string) string {
		b, _ := json.Marshal(types.RouteRequest{Domain: domain, TLSCert: cert, TLSKey: key})
		return string(b)
	}
	const p = "/v1/apps/other/routes"
	a.runRaw(t, []rawCase{
		{"malformed JSON", "POST", p, `{"domain": `, 400, "bad_request", "malformed JSON"},
		{"https_only not a bool", "POST", p, `{"domain": "a.test", "https_only": "yes"}`, 400, "bad_request", `field "https_only"`},
		{"no domain", "POST", p, route("", "", ""), 422, "invalid", `invalid domain "": it is empty`},
		{"upper case", "POST", p, route("Api.example.test", "", ""), 422, "invalid", "use lower-case letters"},
		{"port", "POST", p, route("api.example.test:80", "", ""), 422, "invalid", `invalid domain "api.example.test:80"`},
		{"inner wildcard", "POST", p, route("a.*.example.test", "", ""), 422, "invalid", "a wildcard is allowed only as the first label"},
		{"cert without key", "POST", p, route("api.example.test", wildCert, ""), 422, "invalid", "tls_cert needs tls_key"},
		{"key without cert", "POST", p, route("api.example.test", "", wildKey), 422, "invalid", "tls_key needs tls_cert"},
		{"garbage cert", "POST", p, route("api.example.test", "hello", wildKey), 422, "invalid", "tls_cert holds no PEM certificate"},
		{"key as cert", "POST", p, route("api.example.test", wildKey, wildKey), 422, "invalid", "tls_cert holds a private key"},
		{"broken cert", "POST", p, route("api.example.test", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", wildKey),
			422, "invalid", "tls_cert: certificate 1 does not parse"},
		{"garbage key", "POST", p, route("api.example.test", wildCert, "nope"), 422, "invalid", "tls_key holds no PEM private key"},
		{"mismatched key", "POST", p, route("www2.example.test", wwwCert, otherKey), 422, "invalid", "tls_key does not match the certificate"},
		{"cert for another domain", "POST", p, route("api.example.org", wildCert, wildKey), 422, "invalid",
			"the certificate does not cover api.example.org: it is for *.example.test"},
		{"wildcard route, host cert", "POST", p, route("*.example.test", wwwCert, wwwKey), 422, "invalid",
			"the certificate does not cover *.example.test: it is for www.example.test, example.test"},
		{"expired cert", "POST", p, route("old.example.test", oldCert, oldKey), 422, "invalid", "the certificate expired on"},
		{"domain of another app", "POST", p, route("www.example.test", "", ""), 409, "conflict", "www.example.test is a route of app demo"},
		{"wildcard of another app", "POST", p, route("*.example.test", "", ""), 409, "conflict", "*.example.test is a route of app demo"},
		{"default domain of another app", "POST", p, route("demo.localhost", "", ""), 422, "invalid", "localhost and the names under it are reserved"},
		{"own default domain", "POST", "/v1/apps/demo/routes", route("demo.localhost", "", ""), 422, "invalid", "localhost and the names under it are reserved"},
		{"twice", "POST", "/v1/apps/demo/routes", route("plain.example.org", "", ""), 409, "conflict", "is a route of app demo"},
		{"unknown app", "POST", "/v1/apps/nope/routes", route("x.example.test", "", ""), 404, "app_not_found", `no app named "nope"`},
		{"remove unknown", "DELETE", "/v1/apps/demo/routes/nope.example.test", "", 404, "route_not_found", `app "demo" has no route "nope.example.test"`},
		{"remove another app's", "DELETE", "/v1/apps/other/routes/www.example.test", "", 404, "route_not_found", `app "other" has no route`},
		{"remove the default", "DELETE", "/v1/apps/demo/routes/demo.localhost", "", 422, "invalid", "demo.localhost is the default route of app demo; it cannot be removed"},
		{"remove of unknown app", "DELETE", "/v1/apps/nope/routes/nope.localhost", "", 404, "app_not_found", `no app named "nope"`},
	})
	if routes, _ := a.c.ListRoutes(ctx, "other"); len(routes) != 0 {
		t.Errorf("refused requests added routes: %+v", routes)
	}

	routes, err := a.c.ListRoutes(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	var domains []string
	for _, r := range routes {
		domains = append(domains, fmt.Sprintf("%s default=%t tls=%t https_only=%t", r.Domain, r.Default, r.TLS, r.HTTPSOnly))
	}
	wantDomains := []string{
		"demo.localhost default=true tls=false https_only=false",
		"*.example.test default=false tls=true https_only=false",
		"plain.example.org default=false tls=false https_only=false",
		"www.example.test default=false tls=true https_only=true",
	}
	if !slices.Equal(domains, wantDomains) {
		t.Errorf("ListRoutes =\n%s\nwant\n%s", strings.Join(domains, "\n"), strings.Join(wantDomains, "\n"))
	}
	_, body := a.raw(t, "GET", "/v1/apps/demo/routes", "", "Bearer "+a.token)
	if strings.Contains(string(body), "PRIVATE KEY") || strings.Contains(string(body), "tls_key") {
		t.Errorf("the route list shows a key: %s", body)
	}

	wantEtcd := map[string]routertypes.Route{
		"demo.localhost":    {Domain: "demo.localhost", App: "demo", Service: "demo-web"},
		"*.example.test":    {Domain: "*.example.test", App: "demo", Service: "demo-web", TLSCert: wildCert, TLSKey: wildKey},
		"plain.example.org": {Domain: "plain.example.org", App: "demo", Service: "demo-web"},
		"www.example.test":  {Domain: "www.example.test", App: "demo", Service: "demo-web", HTTPSOnly: true, TLSCert: wwwCert, TLSKey: wwwKey},
	}
	if got := a.routes(t); !maps.Equal(got, wantEtcd) {
		t.Errorf("etcd routes = %+v\nwant %+v", got, wantEtcd)
	}

	if err := a.c.RemoveRoute(ctx, "demo", "plain.example.org"); err != nil {
		t.Fatal(err)
	}
	delete(wantEtcd, "plain.example.org")
	if got := a.routes(t); !maps.Equal(got, wantEtcd) {
		t.Errorf("etcd routes after RemoveRoute = %+v", got)
	}
	// Another app can take the domain now.
	if _, err := a.c.AddRoute(ctx, "other", types.RouteRequest{Domain: "plain.example.org"}); err != nil {
		t.Fatal(err)
	}
	if got := a.routes(t)["plain.example.org"]; got.App != "other" || got.Service != "other-web" {
		t.Errorf("etcd route of other = %+v", got)
	}

	// An app whose default domain is a custom route (one added before the
	// platform's domain was reserved) cannot be created.
	a.sql(t, `INSERT INTO routes (domain, app_id) SELECT 'taken.localhost', id FROM apps WHERE name = 'demo'`)
	_, err = a.c.CreateApp(ctx, "taken")
	wantAPIError(t, err, types.ErrConflict, "the domain taken.localhost of an app named \"taken\" is a route of app demo")

	// Deleting an app removes its formations and routes from etcd.
	if err := a.c.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if fs := a.formations(t, "demo"); len(fs) != 0 {
		t.Errorf("formations of a deleted app: %v", counts(fs))
	}
	if got := a.routes(t); len(got) != 1 || got["plain.example.org"].App != "other" {
		t.Errorf("etcd routes after deleting demo = %+v", got)
	}
	if len(a.formations(t, "other")) != 0 {
		t.Errorf("other (worker=0) has formations")
	}
}

func TestResync(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(c *controller.Config) { c.ResyncInterval = 100 * time.Millisecond })
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Scale(ctx, "demo", map[string]int{"web": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.AddRoute(ctx, "demo", types.RouteRequest{Domain: "www.example.test"}); err != nil {
		t.Fatal(err)
	}
	want := a.kvs(t, a.space.Root())
	if len(want) != 3 {
		t.Fatalf("mirrored keys = %v, want a formation and two routes", slices.Sorted(maps.Keys(want)))
	}
	// A one-off job's formation belongs to whoever runs it (a build).
	oneOff := a.space.Formation("demo", "build-1", "build")
	a.put(t, oneOff, keyspace.Formation{App: "demo", Release: "build-1", Type: "build", Count: 1,
		Template: keyspace.JobSpec{App: "demo", Release: "build-1", Type: "build", Image: "builder", OneOff: true}})
	want[oneOff] = a.kvs(t, oneOff)[oneOff]

	var formationKey string
	for k := range want {
		if strings.HasPrefix(k, a.space.Formations()) && k != oneOff {
			formationKey = k
		}
	}
	damage := []struct {
		name string
		do   func()
	}{
		{"formation deleted", func() { a.del(t, formationKey) }},
		{"route deleted", func() { a.del(t, a.space.Route("demo.localhost")) }},
		{"count changed", func() {
			var f keyspace.Formation
			if err := json.Unmarshal([]byte(want[formationKey]), &f); err != nil {
				t.Fatal(err)
			}
			f.Count = 7
			a.put(t, formationKey, f)
		}},
		{"stray formation", func() {
			a.put(t, a.space.Formation("ghost", "r1", "web"), keyspace.Formation{App: "ghost", Release: "r1", Type: "web", Count: 1})
		}},
		{"stray route", func() {
			a.put(t, a.space.Route("ghost.example.test"), routertypes.Route{Domain: "ghost.example.test", App: "ghost", Service: "ghost-web"})
		}},
		{"route pointed elsewhere", func() {
			a.put(t, a.space.Route("www.example.test"), routertypes.Route{Domain: "www.example.test", App: "evil", Service: "evil-web"})
		}},
	}
	for _, d := range damage {
		t.Run(d.name, func(t *testing.T) {
			d.do()
			waitFor(t, "the re-sync to repair etcd", func() bool { return maps.Equal(a.kvs(t, a.space.Root()), want) })
		})
	}

	// A controller that starts on an empty etcd (a new or wiped cluster
	// store) rebuilds it from PostgreSQL.
	b := serve(t, a.db)
	waitFor(t, "a new controller to fill its etcd", func() bool {
		got := b.kvs(t, b.space.Root())
		return len(got) == 3 && got[formationKey] == want[formationKey]
	})
}

// TestEtcdUnreachable stops etcd under the controller: what needs etcd
// answers 503, and a change of an app is refused at once, saying why,
// with nothing stored (it could not reach the hosts).
func TestEtcdUnreachable(t *testing.T) {
	t.Parallel()
	srv := testenv.EtcdServer(t)
	etcd, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	a := newAPI(t, func(c *controller.Config) { c.Etcd = etcd })
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateRelease(ctx, "demo", webRelease("demo:v1")); err != nil {
		t.Fatal(err)
	}
	before, err := a.c.GetFormation(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()

	_, err = a.c.ListJobs(ctx, "demo")
	wantAPIError(t, err, types.ErrUnavailable, "etcd is unreachable")
	for name, change := range map[string]func() error{
		"scale": func() error {
			_, err := a.c.Scale(ctx, "demo", map[string]int{"web": 2})
			return err
		},
		"env set": func() error {
			_, err := a.c.UpdateConfig(ctx, "demo", map[string]*string{"A": ptr("1")})
			return err
		},
	} {
		wantAPIError(t, change(), types.ErrUnavailable, "etcd does not answer")
		if f, err := a.c.GetFormation(ctx, "demo"); err != nil || f.Processes["web"] != before.Processes["web"] {
			t.Errorf("after a refused %s the formation is %+v, %v; want %+v as it was", name, f, err, before)
		}
	}
}
