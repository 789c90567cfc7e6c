package controller_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller"
	"github.com/gantryhq/gantry/layer1/controller/client"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithPostgres(m))
}

// api is a controller serving on loopback for one test.
type api struct {
	url   string // base URL
	token string
	db    string // database URL
	c     *client.Client
	logs  *syncBuffer
	etcd  *clientv3.Client
	space keyspace.Space
	cfg   controller.Config
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testConfig configures a controller of the cluster "c-test".
func testConfig(dbURL string, etcd *clientv3.Client, logs io.Writer) controller.Config {
	return controller.Config{
		DatabaseURL: dbURL,
		Cluster:     "c-test",
		Etcd:        etcd,
		HostToken:   "host-token",
		Domain:      "localhost",
		GitURL:      "ssh://git@127.0.0.1:2222",
		RouterHTTP:  "http://localhost:8080",
		RouterHTTPS: "https://localhost:8443",
		Version:     "0.1.0-test",
		Logger:      slog.New(slog.NewTextHandler(logs, nil)),
	}
}

// serve runs a controller on dbURL (migrated, with an admin token) and a
// fresh embedded etcd until the test ends; opts change its configuration.
func serve(t testing.TB, dbURL string, opts ...func(*controller.Config)) *api {
	t.Helper()
	etcd := testenv.Etcd(t)
	if err := controller.Migrate(t.Context(), dbURL, nil); err != nil {
		t.Fatal(err)
	}
	token, err := controller.CreateAdminToken(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := testConfig(dbURL, etcd, logs)
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InternalURL == "" {
		cfg.InternalURL = "http://" + ln.Addr().String()
	}
	srv, err := controller.New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
		srv.Close() // idempotent
	})
	base := "http://" + ln.Addr().String()
	return &api{url: base, token: token, db: dbURL, c: client.New(base, token), logs: logs,
		etcd: cfg.Etcd, space: keyspace.MustNew(cfg.Cluster), cfg: cfg}
}

func newAPI(t testing.TB, opts ...func(*controller.Config)) *api {
	t.Helper()
	return serve(t, testenv.NewDatabase(t), opts...)
}

// raw sends a request without the typed client and returns the status and
// the body.
func (a *api) raw(t *testing.T, method, path, body, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (a *api) sql(t *testing.T, query string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), a.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func ptr(s string) *string { return &s }

// wantAPIError checks that err is an API error with the code and status of
// want and a message containing msg.
func wantAPIError(t *testing.T, err error, want *types.Error, msg string) {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want %s", err, err, want.Code)
	}
	if !errors.Is(err, want) || e.Status != want.Status {
		t.Fatalf("err = %v (status %d), want %s (%d)", err, e.Status, want.Code, want.Status)
	}
	if !strings.Contains(e.Message, msg) {
		t.Errorf("message %q does not contain %q", e.Message, msg)
	}
}

// newPublicKey returns a fresh ed25519 public key in authorized_keys format.
func newPublicKey(t *testing.T, comment string) (string, ssh.PublicKey) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	if comment != "" {
		line += " " + comment
	}
	return line, sshPub
}

func TestHealthAndInfo(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if err := client.New(a.url, "").Health(t.Context()); err != nil {
		t.Fatalf("Health without a token: %v", err)
	}
	info, err := a.c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := types.Info{Version: "0.1.0-test", Cluster: "c-test", Domain: "localhost",
		GitURL: "ssh://git@127.0.0.1:2222", RouterHTTP: "http://localhost:8080", RouterHTTPS: "https://localhost:8443"}
	if *info != want {
		t.Errorf("Info = %+v, want %+v", *info, want)
	}
	resp, body := a.raw(t, "GET", "/healthz", "", "")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != `{"status":"ok"}` {
		t.Errorf("GET /healthz = %d %s", resp.StatusCode, body)
	}
	if !regexp.MustCompile(`msg=request method=GET path=/v1/info status=200 duration=\S+`).MatchString(a.logs.String()) {
		t.Errorf("no request log line for GET /v1/info in:\n%s", a.logs)
	}
}

func TestApps(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	demo, err := a.c.CreateApp(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if demo.Name != "demo" || demo.ID == "" || demo.Release != 0 ||
		demo.GitURL != "ssh://git@127.0.0.1:2222/demo.git" || demo.WebURL != "http://demo.localhost:8080" ||
		!slices.Equal(demo.URLs, []string{"http://demo.localhost:8080", "https://demo.localhost:8443"}) ||
		demo.CreatedAt.IsZero() || demo.CreatedAt.Location() != time.UTC {
		t.Errorf("CreateApp = %+v", demo)
	}
	generated, err := a.c.CreateApp(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[a-z]+-[a-z]+-[1-9][0-9]{3}$`).MatchString(generated.Name) || types.ValidateAppName(generated.Name) != nil {
		t.Errorf("generated name %q", generated.Name)
	}
	if _, err := a.c.CreateApp(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	apps, err := a.c.ListApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, app := range apps {
		names = append(names, app.Name)
	}
	want := []string{"alpha", "demo", generated.Name}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("ListApps = %v, want %v", names, want)
	}
	got, err := a.c.GetApp(ctx, "demo")
	if err != nil || got.ID != demo.ID || got.WebURL != demo.WebURL {
		t.Errorf("GetApp = %+v, %v", got, err)
	}
	if err := a.c.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	_, err = a.c.GetApp(ctx, "demo")
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "demo"`)
	wantAPIError(t, a.c.DeleteApp(ctx, "demo"), types.ErrAppNotFound, `no app named "demo"`)

	empty := newAPI(t)
	if apps, err := empty.c.ListApps(ctx); err != nil || apps == nil || len(apps) != 0 {
		t.Errorf("ListApps with no apps = %#v, %v; want an empty list", apps, err)
	}
	if _, body := empty.raw(t, "GET", "/v1/apps", "", "Bearer "+empty.token); strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("GET /v1/apps with no apps = %s, want []", body)
	}
}

func TestConfigVars(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		changes map[string]*string
		want    map[string]string
		err     *types.Error
		msg     string
	}{
		{"set", map[string]*string{"A": ptr("1"), "B": ptr("2")}, map[string]string{"A": "1", "B": "2"}, nil, ""},
		{"set and unset", map[string]*string{"A": ptr("one"), "B": nil}, map[string]string{"A": "one"}, nil, ""},
		{"nothing", map[string]*string{}, map[string]string{"A": "one"}, nil, ""},
		{"bad name changes nothing", map[string]*string{"C": ptr("3"), "BAD-NAME": ptr("x")},
			map[string]string{"A": "one"}, types.ErrInvalid, `"BAD-NAME"`},
		{"value too large changes nothing", map[string]*string{"A": ptr("two"), "BIG": ptr(strings.Repeat("x", types.MaxConfigValue+1))},
			map[string]string{"A": "one"}, types.ErrInvalid, "config var BIG"},
		{"NUL changes nothing", map[string]*string{"N": ptr("a\x00b")}, map[string]string{"A": "one"}, types.ErrInvalid, "NUL"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := a.c.UpdateConfig(ctx, "demo", st.changes)
			if st.err != nil {
				wantAPIError(t, err, st.err, st.msg)
			} else if err != nil {
				t.Fatal(err)
			} else if fmt.Sprint(got) != fmt.Sprint(st.want) {
				t.Errorf("UpdateConfig returned %v, want %v", got, st.want)
			}
			stored, err := a.c.GetConfig(ctx, "demo")
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(stored) != fmt.Sprint(st.want) {
				t.Errorf("GetConfig = %v, want %v", stored, st.want)
			}
		})
	}
	_, err := a.c.GetConfig(ctx, "nope")
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)
	_, err = a.c.UpdateConfig(ctx, "nope", map[string]*string{"A": ptr("1")})
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)
}

func TestKeys(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	// A fingerprint with '/' and '+' checks the path escaping of DELETE.
	line, pub := newPublicKey(t, "me@laptop")
	for !strings.ContainsAny(ssh.FingerprintSHA256(pub), "/+") {
		line, pub = newPublicKey(t, "me@laptop")
	}
	k, err := a.c.AddKey(ctx, "  "+line+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if k.Fingerprint != ssh.FingerprintSHA256(pub) || k.Type != "ssh-ed25519" || k.Comment != "me@laptop" ||
		k.Key != line || k.CreatedAt.IsZero() {
		t.Errorf("AddKey = %+v", k)
	}
	_, err = a.c.AddKey(ctx, line)
	wantAPIError(t, err, types.ErrConflict, k.Fingerprint)
	other, _ := newPublicKey(t, "")
	if _, err := a.c.AddKey(ctx, other); err != nil {
		t.Fatal(err)
	}
	keys, err := a.c.ListKeys(ctx)
	if err != nil || len(keys) != 2 || keys[0].Fingerprint != k.Fingerprint {
		t.Fatalf("ListKeys = %+v, %v", keys, err)
	}
	if got, err := a.c.GetKey(ctx, k.Fingerprint); err != nil || got.Key != line || !got.CreatedAt.Equal(k.CreatedAt) {
		t.Errorf("GetKey %s = %+v, %v", k.Fingerprint, got, err)
	}
	if err := a.c.RemoveKey(ctx, k.Fingerprint); err != nil {
		t.Fatalf("RemoveKey %s: %v", k.Fingerprint, err)
	}
	_, err = a.c.GetKey(ctx, k.Fingerprint)
	wantAPIError(t, err, types.ErrKeyNotFound, k.Fingerprint)
	wantAPIError(t, a.c.RemoveKey(ctx, k.Fingerprint), types.ErrKeyNotFound, k.Fingerprint)
	if keys, _ := a.c.ListKeys(ctx); len(keys) != 1 {
		t.Errorf("after RemoveKey: %+v", keys)
	}

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(block))
	second, _ := newPublicKey(t, "")
	bad := []struct{ name, key, msg string }{
		{"empty", "", "empty"},
		{"garbage", "hello world", "not an SSH public key"},
		{"private key", privPEM, "private key"},
		{"two keys", line + "\n" + second, "found 2 keys"},
		{"options", `command="ls" ` + line, "key options"},
		{"truncated", line[:40], "not an SSH public key"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.c.AddKey(ctx, tt.key)
			wantAPIError(t, err, types.ErrInvalid, tt.msg)
		})
	}
}

func TestReleases(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	rels, err := a.c.ListReleases(ctx, "demo")
	if err != nil || rels == nil || len(rels) != 0 {
		t.Fatalf("ListReleases of a new app = %#v, %v; want an empty list", rels, err)
	}
	_, err = a.c.GetRelease(ctx, "demo", 1)
	wantAPIError(t, err, types.ErrReleaseNotFound, `app "demo" has no release 1`)
	_, err = a.c.ListReleases(ctx, "nope")
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)
	_, err = a.c.GetRelease(ctx, "nope", 1)
	wantAPIError(t, err, types.ErrAppNotFound, `no app named "nope"`)

	// Releases are made by the build path; here the store makes two.
	st, err := store.Open(a.db, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 1; i <= 2; i++ {
		if _, err := st.CreateRelease(ctx, "demo", store.NewRelease{
			Description: fmt.Sprintf("Deploy %d", i),
			Image:       "gantry/stack:1",
			Slug:        "sha256:0123",
			SlugPath:    "slugs/demo/0123.tgz",
			Config:      map[string]string{"V": fmt.Sprint(i)},
			Processes:   map[string]types.Process{"web": {Command: "bin/web", HealthPath: "/healthz"}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	rels, err = a.c.ListReleases(ctx, "demo")
	if err != nil || len(rels) != 2 || rels[0].Version != 2 || rels[1].Version != 1 {
		t.Fatalf("ListReleases = %+v, %v", rels, err)
	}
	r, err := a.c.GetRelease(ctx, "demo", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.App != "demo" || r.Description != "Deploy 1" || r.Config["V"] != "1" ||
		r.Processes["web"] != (types.Process{Command: "bin/web", HealthPath: "/healthz"}) || r.Slug != "sha256:0123" {
		t.Errorf("GetRelease = %+v", r)
	}
	// "v2" names release 2 too.
	resp, body := a.raw(t, "GET", "/v1/apps/demo/releases/v2", "", "Bearer "+a.token)
	var r2 types.Release
	if resp.StatusCode != 200 || json.Unmarshal(body, &r2) != nil || r2.Version != 2 {
		t.Errorf("GET releases/v2 = %d %s", resp.StatusCode, body)
	}
	for _, v := range []string{"0", "x", "v", "99999999999"} {
		resp, body := a.raw(t, "GET", "/v1/apps/demo/releases/"+v, "", "Bearer "+a.token)
		if resp.StatusCode != 404 || !strings.Contains(string(body), "release_not_found") {
			t.Errorf("GET releases/%s = %d %s", v, resp.StatusCode, body)
		}
	}

	a.sql(t, `UPDATE apps SET release_id = (SELECT id FROM releases WHERE version = 2) WHERE name = 'demo'`)
	if app, err := a.c.GetApp(ctx, "demo"); err != nil || app.Release != 2 {
		t.Errorf("GetApp with current release v2 = %+v, %v", app, err)
	}
	if err := a.c.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if rels, err := a.c.ListReleases(ctx, "demo"); err != nil || len(rels) != 0 {
		t.Errorf("a new app with an old name has releases: %+v, %v", rels, err)
	}
}

// TestErrors checks each error answer on the wire: status, code, message and
// content type.
func TestErrors(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if _, err := a.c.CreateApp(t.Context(), "taken"); err != nil {
		t.Fatal(err)
	}
	key, _ := newPublicKey(t, "")
	if _, err := a.c.AddKey(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	bearer := "Bearer " + a.token
	tooLarge := `{"name": "` + strings.Repeat("a", controller.MaxBodyBytes) + `"}`
	tests := []struct {
		name, method, path, body, auth string
		status                         int
		code, msg                      string
	}{
		{"malformed JSON", "POST", "/v1/apps", `{"name": `, bearer, 400, "bad_request", "malformed JSON"},
		{"unknown field", "POST", "/v1/apps", `{"nmae": "demo"}`, bearer, 400, "bad_request", `unknown field "nmae"`},
		{"wrong type", "POST", "/v1/apps", `{"name": 5}`, bearer, 400, "bad_request", `field "name": got a JSON number, want a string`},
		{"two values", "POST", "/v1/apps", `{} {}`, bearer, 400, "bad_request", "more than one JSON value"},
		{"config not an object", "PATCH", "/v1/apps/taken/config", `["A"]`, bearer, 400, "bad_request", "want an object"},
		{"config null", "PATCH", "/v1/apps/taken/config", `null`, bearer, 400, "bad_request", "JSON object"},
		{"config number value", "PATCH", "/v1/apps/taken/config", `{"A": 1}`, bearer, 400, "bad_request", "got a JSON number"},
		{"empty key body", "POST", "/v1/keys", ``, bearer, 400, "bad_request", "body is empty"},
		{"no token", "GET", "/v1/apps", "", "", 401, "unauthorized", "missing API token"},
		{"wrong token", "GET", "/v1/apps", "", "Bearer gty_wrong", 401, "unauthorized", "the API token was rejected"},
		{"not bearer", "GET", "/v1/apps", "", "Basic " + a.token, 401, "unauthorized", "missing API token"},
		{"no token on unknown route", "GET", "/v1/nope", "", "", 401, "unauthorized", "missing API token"},
		{"unknown app", "GET", "/v1/apps/nope", "", bearer, 404, "app_not_found", `no app named "nope"`},
		{"unknown key", "DELETE", "/v1/keys/SHA256%3Anope", "", bearer, 404, "key_not_found", `"SHA256:nope"`},
		{"unknown route", "GET", "/v1/nope", "", bearer, 404, "not_found", "no endpoint /v1/nope"},
		{"unknown route outside v1", "GET", "/nope", "", "", 404, "not_found", "no endpoint /nope"},
		{"wrong method", "PUT", "/v1/apps", "", bearer, 405, "method_not_allowed", "use GET, HEAD, POST"},
		{"duplicate app", "POST", "/v1/apps", `{"name": "taken"}`, bearer, 409, "conflict", `an app named "taken" already exists`},
		{"duplicate key", "POST", "/v1/keys", `{"key": "` + key + `"}`, bearer, 409, "conflict", "already added"},
		{"body too large", "POST", "/v1/apps", tooLarge, bearer, 413, "too_large", "larger than 1048576 bytes"},
		{"invalid name", "POST", "/v1/apps", `{"name": "Bad_Name"}`, bearer, 422, "invalid", `invalid app name "Bad_Name"`},
		{"reserved prefix", "POST", "/v1/apps", `{"name": "gantry-x"}`, bearer, 422, "invalid", `the prefix "gantry-" is reserved`},
		{"destroy of a system app", "DELETE", "/v1/apps/gantry-router", "", bearer, 403, "forbidden", "gantry-router is one of the platform's own apps"},
		{"invalid config var", "PATCH", "/v1/apps/taken/config", `{"OK": "1", "1BAD": "x"}`, bearer, 422, "invalid", `"1BAD"`},
		{"invalid key", "POST", "/v1/keys", `{"key": "ssh-rsa garbage"}`, bearer, 422, "invalid", "not an SSH public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := a.raw(t, tt.method, tt.path, tt.body, tt.auth)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (body %s)", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if got := resp.Header.Get("WWW-Authenticate") != ""; got != (tt.status == 401) {
				t.Errorf("WWW-Authenticate %q on a %d answer", resp.Header.Get("WWW-Authenticate"), tt.status)
			}
			var eb types.ErrorBody
			if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
				t.Fatalf("body %s is not an error body: %v", body, err)
			}
			if eb.Error.Code != tt.code || !strings.Contains(eb.Error.Message, tt.msg) {
				t.Errorf("error %+v, want code %s and a message containing %q", eb.Error, tt.code, tt.msg)
			}
			if sentinel := types.ErrorForCode(eb.Error.Code); sentinel == nil || sentinel.Status != resp.StatusCode {
				t.Errorf("code %s does not map to status %d in the table", eb.Error.Code, resp.StatusCode)
			}
		})
	}
	if cfg, err := a.c.GetConfig(t.Context(), "taken"); err != nil || len(cfg) != 0 {
		t.Errorf("config after the failed changes = %v, %v; want it empty", cfg, err)
	}

	// The client reports the same errors as Go errors.
	wrong := client.New(a.url, "gty_wrong")
	_, err := wrong.ListApps(t.Context())
	wantAPIError(t, err, types.ErrUnauthorized, "the API token was rejected")
	if got := err.Error(); got != "unauthorized: the API token was rejected (check GANTRY_TOKEN)" {
		t.Errorf("401 error reads %q", got)
	}
	_, err = a.c.CreateApp(t.Context(), "taken")
	wantAPIError(t, err, types.ErrConflict, "already exists")
	_, err = a.c.CreateApp(t.Context(), "x")
	wantAPIError(t, err, types.ErrInvalid, "too short")
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if !regexp.MustCompile(`^gty_[A-Za-z0-9_-]{43}$`).MatchString(a.token) {
		t.Errorf("token %q has the wrong form", a.token)
	}
	conn, err := pgx.Connect(t.Context(), a.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var name string
	var hash []byte
	if err := conn.QueryRow(t.Context(), `SELECT name, hash FROM api_tokens`).Scan(&name, &hash); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte(a.token)); name != "admin" || !bytes.Equal(hash, sum[:]) {
		t.Errorf("stored token %s %x, want admin and the SHA-256 of the token", name, hash)
	}
	newToken, err := controller.CreateAdminToken(t.Context(), a.db)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.c.ListApps(t.Context())
	wantAPIError(t, err, types.ErrUnauthorized, "rejected")
	if _, err := client.New(a.url, newToken).ListApps(t.Context()); err != nil {
		t.Errorf("the new token is refused: %v", err)
	}
}

// TestPostgresUnreachable stops the controller's PostgreSQL under it: the
// API answers 503 and recovers when PostgreSQL is back.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t, "")
	if err := pg.CreateDatabase(t.Context(), "gantry"); err != nil {
		t.Fatal(err)
	}
	a := serve(t, pg.URL("gantry"))
	if _, err := a.c.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"health", func() error { return a.c.Health(t.Context()) }},
		{"list apps", func() error { _, err := a.c.ListApps(t.Context()); return err }},
		{"get app", func() error { _, err := a.c.GetApp(t.Context(), "demo"); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			wantAPIError(t, c.call(), types.ErrUnavailable, "PostgreSQL is unreachable")
		})
	}
	resp, body := a.raw(t, "GET", "/healthz", "", "")
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"code":"unavailable"`) {
		t.Errorf("GET /healthz = %d %s", resp.StatusCode, body)
	}

	testenv.StartPostgres(t, pg.Dir())
	waitFor(t, "the API to recover", func() bool { return a.c.Health(t.Context()) == nil })
	if app, err := a.c.GetApp(t.Context(), "demo"); err != nil || app.Name != "demo" {
		t.Errorf("GetApp after PostgreSQL is back = %+v, %v", app, err)
	}
}

// waitFor polls cond until it holds or the test's deadline passes.
// waitForTimeout bounds waitFor: generous for a loaded 2-core machine, and
// far below the suite's own timeout, so that a regression fails its test
// with a message instead of hanging the whole run.
const waitForTimeout = 3 * time.Minute

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitForTimeout)
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatalf("gave up waiting for %s", what)
		case <-deadline:
			t.Fatalf("gave up waiting for %s after %s", what, waitForTimeout)
		case <-tick.C:
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	dbURL := testenv.NewDatabase(t)
	etcd := testenv.Etcd(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	busy := ln.Addr().String()
	defer ln.Close()
	free := testenv.FreeAddr(t)

	t.Run("address in use", func(t *testing.T) {
		cfg := testConfig(dbURL, etcd, io.Discard)
		cfg.Addr = busy
		err := controller.Run(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), "listen on "+busy) {
			t.Errorf("Run on a busy address: %v", err)
		}
	})
	t.Run("PostgreSQL unreachable at start", func(t *testing.T) {
		cfg := testConfig("postgres://postgres@/gantry?host=/nonexistent-gantry-socket-dir&sslmode=disable", etcd, io.Discard)
		cfg.Addr = free
		err := controller.Run(t.Context(), cfg)
		if !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "migrate the database: PostgreSQL is unreachable") {
			t.Errorf("Run without PostgreSQL: %v", err)
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		cfg := testConfig(dbURL, etcd, io.Discard)
		cfg.Addr = ""
		err := controller.Run(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), "Addr is required") {
			t.Errorf("Run without Addr: %v", err)
		}
	})
	t.Run("serves until cancelled", func(t *testing.T) {
		cfg := testConfig(dbURL, etcd, io.Discard)
		cfg.Addr = free
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- controller.Run(ctx, cfg) }()
		c := client.New("http://"+free, "")
		waitFor(t, "Run to serve", func() bool {
			select {
			case err := <-done:
				t.Fatalf("Run returned early: %v", err)
			default:
			}
			return c.Health(t.Context()) == nil
		})
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
		if err := c.Health(t.Context()); err == nil || !strings.Contains(err.Error(), "cannot reach the controller at http://"+free) {
			t.Errorf("Health after shutdown: %v", err)
		}
	})
}

// TestSystemAppURLs checks that a system app, which has no web process
// and so no default route, shows no web URL, while an app does.
func TestSystemAppURLs(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	st, err := store.Open(a.db, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.EnsureSystemApp(ctx, store.SystemApp{Name: "gantry-scheduler", Image: "gantry/platform:v1",
		Processes: map[string]types.Process{"scheduler": {Command: "gantryd scheduler", System: &types.SystemProcess{}}},
		Counts:    map[string]int{"scheduler": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	apps, err := a.c.ListApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]types.App{}
	for _, app := range apps {
		got[app.Name] = app
	}
	if sys, ok := got["gantry-scheduler"]; !ok || sys.WebURL != "" || len(sys.URLs) != 0 {
		t.Errorf("the system app in ListApps: %+v, want no web URL", sys)
	}
	if demo := got["demo"]; demo.WebURL != "http://demo.localhost:8080" {
		t.Errorf("demo's web URL %q", demo.WebURL)
	}
	if sys, err := a.c.GetApp(ctx, "gantry-scheduler"); err != nil || sys.WebURL != "" || len(sys.URLs) != 0 {
		t.Errorf("GetApp(gantry-scheduler) = %+v, %v; want no web URL", sys, err)
	}
}
