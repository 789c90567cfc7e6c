package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/gantryhq/gantry/deploy/testenv"
	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer1/controller/types"
)

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithPostgres(m))
}

// newStore returns a store on a fresh, migrated database.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	url := testenv.NewDatabase(t)
	if err := Migrate(t.Context(), url, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, url
}

func count(t *testing.T, url, sql string, args ...any) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func exec(t *testing.T, url, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func ptr(s string) *string { return &s }

func migrationCount(t *testing.T) int {
	t.Helper()
	entries, err := migrationFiles.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestMigrationsSurviveRestart(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t, "")
	if err := pg.CreateDatabase(t.Context(), "gantry"); err != nil {
		t.Fatal(err)
	}
	url := pg.URL("gantry")
	if err := Migrate(t.Context(), url, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateConfig(t.Context(), "demo", map[string]*string{"A": ptr("1")}, "", noCheck); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := pg.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}

	pg2 := testenv.StartPostgres(t, pg.Dir())
	url = pg2.URL("gantry")
	for range 2 { // migrating again changes nothing
		if err := Migrate(t.Context(), url, nil); err != nil {
			t.Fatalf("Migrate after restart: %v", err)
		}
	}
	applied := count(t, url, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`)
	if want := migrationCount(t); applied != want {
		t.Errorf("%d migrations recorded, want %d", applied, want)
	}
	s2, err := Open(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	config, err := s2.Config(t.Context(), "demo")
	if err != nil {
		t.Fatalf("app lost across the restart: %v", err)
	}
	if config["A"] != "1" {
		t.Errorf("config after restart: %v", config)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	url := testenv.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = Migrate(t.Context(), url, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	if n := count(t, url, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`); n != migrationCount(t) {
		t.Errorf("%d migrations recorded, want %d", n, migrationCount(t))
	}
}

func TestApps(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	for _, name := range []string{"zeta", "alpha", "mid"} {
		a, err := s.CreateApp(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != name || a.ID == "" || a.CreatedAt.IsZero() || a.CreatedAt.Location() != time.UTC {
			t.Errorf("created %+v", a)
		}
	}
	if _, err := s.CreateApp(ctx, "alpha"); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate CreateApp: err = %v, want ErrConflict", err)
	}
	apps, err := s.ListApps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if fmt.Sprint(names) != "[alpha mid zeta]" {
		t.Errorf("ListApps order: %v", names)
	}
	got, err := s.GetApp(ctx, "mid")
	if err != nil || got.Name != "mid" || got.Release != 0 {
		t.Errorf("GetApp = %+v, %v", got, err)
	}
	if _, err := s.GetApp(ctx, "nope"); !errors.Is(err, ErrAppNotFound) || !errors.Is(err, ErrNotFound) {
		t.Errorf("GetApp of a missing app: %v", err)
	}
	if err := s.DeleteApp(ctx, "mid"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteApp(ctx, "mid"); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("second DeleteApp: %v", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	if _, err := s.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		changes map[string]*string
		want    string // fmt of the config after the step
		err     error
	}{
		{"empty", nil, "map[]", nil},
		{"set", map[string]*string{"A": ptr("1"), "B": ptr("2")}, "map[A:1 B:2]", nil},
		{"replace and unset", map[string]*string{"A": ptr("one"), "B": nil}, "map[A:one]", nil},
		{"unset missing", map[string]*string{"NOPE": nil}, "map[A:one]", nil},
		{"empty value", map[string]*string{"E": ptr("")}, "map[A:one E:]", nil},
		// The database refuses the bad name; the good change goes too.
		{"all or nothing", map[string]*string{"C": ptr("3"), "bad-name": ptr("x")}, "map[A:one E:]", errors.New("any")},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := s.UpdateConfig(ctx, "demo", st.changes, "", noCheck)
			if (err != nil) != (st.err != nil) {
				t.Fatalf("err = %v", err)
			}
			if err == nil && fmt.Sprint(got.Config) != st.want {
				t.Errorf("returned %v, want %s", got, st.want)
			}
			stored, err := s.Config(ctx, "demo")
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(stored) != st.want {
				t.Errorf("stored %v, want %s", stored, st.want)
			}
		})
	}
	if _, err := s.Config(ctx, "nope"); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("Config of a missing app: %v", err)
	}
	if _, err := s.UpdateConfig(ctx, "nope", map[string]*string{"A": ptr("1")}, "", noCheck); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("UpdateConfig of a missing app: %v", err)
	}
}

func TestReleases(t *testing.T) {
	t.Parallel()
	s, url := newStore(t)
	ctx := t.Context()
	if _, err := s.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if rels, err := s.ListReleases(ctx, "demo"); err != nil || len(rels) != 0 {
		t.Fatalf("ListReleases of a new app = %v, %v", rels, err)
	}
	for i := 1; i <= 2; i++ {
		r, err := s.CreateRelease(ctx, "demo", NewRelease{
			Description: fmt.Sprintf("Deploy %d", i),
			Image:       "gantry/stack:1",
			Slug:        "sha256:abc",
			SlugPath:    fmt.Sprintf("slugs/demo/%d.tgz", i),
			Config:      map[string]string{"N": fmt.Sprint(i)},
			Processes:   map[string]types.Process{"web": {Command: "./web", HealthPath: "/healthz"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != i || r.App != "demo" || r.ID == "" {
			t.Fatalf("release %d = %+v", i, r)
		}
	}
	rels, err := s.ListReleases(ctx, "demo")
	if err != nil || len(rels) != 2 || rels[0].Version != 2 || rels[1].Version != 1 {
		t.Fatalf("ListReleases = %+v, %v", rels, err)
	}
	r, err := s.GetRelease(ctx, "demo", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Config["N"] != "1" || r.Processes["web"].HealthPath != "/healthz" || r.Slug != "sha256:abc" {
		t.Errorf("GetRelease = %+v", r)
	}
	if _, err := s.GetRelease(ctx, "demo", 9); !errors.Is(err, ErrReleaseNotFound) {
		t.Errorf("GetRelease of a missing version: %v", err)
	}
	for _, f := range []func() error{
		func() error { _, err := s.GetRelease(ctx, "nope", 1); return err },
		func() error { _, err := s.ListReleases(ctx, "nope"); return err },
		func() error { _, err := s.CreateRelease(ctx, "nope", NewRelease{}); return err },
	} {
		if err := f(); !errors.Is(err, ErrAppNotFound) {
			t.Errorf("release call on a missing app: %v", err)
		}
	}

	// The current release shows in the app; deleting the app deletes its
	// config and releases.
	exec(t, url, `UPDATE apps SET release_id = (SELECT id FROM releases WHERE version = 2) WHERE name = 'demo'`)
	if a, err := s.GetApp(ctx, "demo"); err != nil || a.Release != 2 {
		t.Errorf("GetApp with a current release = %+v, %v", a, err)
	}
	if _, err := s.UpdateConfig(ctx, "demo", map[string]*string{"A": ptr("1")}, "", noCheck); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"releases", "config_vars"} {
		if n := count(t, url, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%d rows left in %s after DeleteApp", n, table)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	k := types.Key{Fingerprint: "SHA256:abc", Type: "ssh-ed25519", Comment: "me@laptop", Key: "ssh-ed25519 AAAA me@laptop"}
	added, err := s.AddKey(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if added.CreatedAt.IsZero() || added.Fingerprint != k.Fingerprint {
		t.Errorf("AddKey = %+v", added)
	}
	if _, err := s.AddKey(ctx, k); !errors.Is(err, ErrConflict) {
		t.Errorf("duplicate AddKey: %v", err)
	}
	keys, err := s.ListKeys(ctx)
	if err != nil || len(keys) != 1 || keys[0].Key != k.Key || keys[0].Comment != k.Comment {
		t.Fatalf("ListKeys = %+v, %v", keys, err)
	}
	if got, err := s.GetKey(ctx, k.Fingerprint); err != nil || got.Key != k.Key || got.CreatedAt.IsZero() {
		t.Errorf("GetKey = %+v, %v", got, err)
	}
	if err := s.RemoveKey(ctx, k.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveKey(ctx, k.Fingerprint); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("second RemoveKey: %v", err)
	}
	if _, err := s.GetKey(ctx, k.Fingerprint); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("GetKey of a removed key: %v", err)
	}
}

// TestKeptSlugs checks which slugs the releases of an app still need: the
// newest ones', the current release's and the one being deployed.
func TestKeptSlugs(t *testing.T) {
	t.Parallel()
	s, url := newStore(t)
	ctx := t.Context()
	if _, err := s.CreateApp(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	if kept, err := s.KeptSlugs(ctx, "demo", 3); err != nil || len(kept) != 0 {
		t.Errorf("KeptSlugs without releases = %v, %v", kept, err)
	}
	for i := 1; i <= 7; i++ {
		r := NewRelease{Processes: map[string]types.Process{"web": {Command: "./web"}}}
		if i != 6 { // v6 is a release of an image
			r.Slug, r.SlugPath = "sha256:abc", fmt.Sprintf("slugs/demo/%d.tgz", i)
		} else {
			r.Image = "demo:6"
		}
		if _, err := s.CreateRelease(ctx, "demo", r); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, url, `UPDATE apps SET release_id = (SELECT id FROM releases WHERE version = 2) WHERE name = 'demo'`)
	exec(t, url, `INSERT INTO formations (app_id, release_id, type, count)
		SELECT app_id, id, 'web', 1 FROM releases WHERE version = 3`)
	kept, err := s.KeptSlugs(ctx, "demo", 3)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"slugs/demo/2.tgz": true, "slugs/demo/3.tgz": true, "slugs/demo/5.tgz": true, "slugs/demo/7.tgz": true}
	if !maps.Equal(kept, want) {
		t.Errorf("KeptSlugs = %v, want %v", kept, want)
	}
	if _, err := s.KeptSlugs(ctx, "nope", 3); !errors.Is(err, ErrAppNotFound) {
		t.Errorf("KeptSlugs of a missing app: %v", err)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	first, second := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	if err := s.PutToken(ctx, "admin", first); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(ctx, "admin", second); err != nil {
		t.Fatal(err)
	}
	hashes, err := s.TokenHashes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hashes) != 1 || string(hashes[0]) != string(second[:]) {
		t.Errorf("TokenHashes = %x, want only the replacement", hashes)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	pg := testenv.StartPostgres(t, "")
	url := pg.URL("postgres")
	if err := Migrate(t.Context(), url, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	calls := map[string]func() error{
		"Ping":    func() error { return s.Ping(t.Context()) },
		"GetApp":  func() error { _, err := s.GetApp(t.Context(), "demo"); return err },
		"Migrate": func() error { return Migrate(t.Context(), url, nil) },
		"UpdateConfig": func() error {
			_, err := s.UpdateConfig(t.Context(), "demo", map[string]*string{"A": nil}, "", noCheck)
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			if err := call(); !errors.Is(err, ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestIsUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection failure", &pgconn.PgError{Code: "08006"}, true},
		{"admin shutdown", fmt.Errorf("query: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"starting up", &pgconn.PgError{Code: "57P03"}, true},
		{"too many connections", &pgconn.PgError{Code: "53300"}, true},
		{"unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"syntax error", &pgconn.PgError{Code: "42601"}, false},
		{"connection closed", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"deadline", context.DeadlineExceeded, true},
		{"no rows", pgx.ErrNoRows, false},
		{"other", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isUnavailable(tt.err); got != tt.want {
				t.Errorf("isUnavailable(%v) = %v", tt.err, got)
			}
		})
	}
}

// noCheck accepts every config change.
func noCheck(_, _ map[string]string) error { return nil }

// TestEnsureSystemApp makes a system app, finds it unchanged on a second
// call, and deploys a new release (one by one, from the running one) when
// its process changes, returning that deployment again while it runs; an
// app that runs no job, or whose jobs cannot share their port with new
// ones (no readiness socket), gets its new release current at once. The mirrored
// state has the formation with the system settings.
func TestEnsureSystemApp(t *testing.T) {
	t.Parallel()
	s, url := newStore(t)
	ctx := t.Context()
	proc := func(cmd string) map[string]types.Process {
		return map[string]types.Process{"router": {Command: cmd, System: &types.SystemProcess{Port: 8080,
			Binds: []keyspace.Bind{{Source: "/data", Target: "/data"}}, Ready: true}}}
	}
	want := SystemApp{Name: "gantry-router", Image: "gantry/platform:v1", Description: "gantryd up",
		Processes: proc("gantryd router --data /data"), Counts: map[string]int{"router": 1}}
	var deployment string
	steps := []struct {
		name             string
		change           func(*SystemApp)
		version, current int
		changed, deploys bool
	}{
		{"new", func(*SystemApp) {}, 1, 1, true, false},
		{"unchanged", func(*SystemApp) {}, 1, 1, false, false},
		{"scaled back up", func(*SystemApp) { exec(t, url, `UPDATE formations SET count = 0`) }, 1, 1, false, false},
		{"new command", func(a *SystemApp) { a.Processes = proc("gantryd router --data /data --http-addr :80") }, 2, 1, true, true},
		{"deployment under way", func(*SystemApp) {}, 2, 1, false, true},
	}
	for _, st := range steps {
		st.change(&want)
		ch, err := s.EnsureSystemApp(ctx, want)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if ch.Release.Version != st.version || ch.Changed != st.changed || (ch.Deployment != nil) != st.deploys {
			t.Errorf("%s: release v%d, changed %v, deployment %+v; want v%d, %v, deployment %v", st.name,
				ch.Release.Version, ch.Changed, ch.Deployment, st.version, st.changed, st.deploys)
		}
		if d := ch.Deployment; d != nil {
			if d.Status != types.DeployRunning || !d.FromRunning || d.Strategy != types.StrategyOneByOne || d.New.Version != 2 || d.Old.Version != 1 {
				t.Errorf("%s: deployment %+v, want running one by one from v1 to v2", st.name, d)
			}
			if deployment != "" && d.ID != deployment {
				t.Errorf("%s: deployment %s, want the one under way, %s", st.name, d.ID, deployment)
			}
			deployment = d.ID
		}
		a, err := s.GetApp(ctx, "gantry-router")
		if err != nil || a.Release != st.current {
			t.Errorf("%s: app %+v, %v; want current release v%d", st.name, a, err, st.current)
		}
		if st.deploys {
			continue
		}
		m, err := s.Mirror(ctx, "gantry-router")
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Formations) != 1 || m.Formations[0].Count != 1 || m.Formations[0].Release.Version != st.version ||
			m.Formations[0].Image != want.Image || m.Formations[0].Process.System == nil || m.Formations[0].Process.System.Port != 8080 {
			t.Errorf("%s: mirrored formations %+v", st.name, m.Formations)
		}
	}

	// An app whose jobs cannot share their port: a new release is
	// current at once.
	old := SystemApp{Name: "gantry-gitreceiver", Image: "gantry/platform:v1", Description: "gantryd up",
		Processes: map[string]types.Process{"gitreceiver": {Command: "gantryd gitreceiver serve", System: &types.SystemProcess{Port: 2222}}},
		Counts:    map[string]int{"gitreceiver": 1}}
	for i, img := range []string{"gantry/platform:v1", "gantry/platform:v2"} {
		old.Image = img
		ch, err := s.EnsureSystemApp(ctx, old)
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.GetApp(ctx, old.Name)
		if err != nil || !ch.Changed || ch.Deployment != nil || ch.Release.Version != i+1 || a.Release != i+1 {
			t.Errorf("%s: %+v, app %+v, %v; want v%d current at once", img, ch, a, err, i+1)
		}
	}

	// An app that runs no job: a new release is current at once.
	idle := SystemApp{Name: "gantry-scheduler", Image: "gantry/platform:v1", Description: "gantryd up",
		Processes: map[string]types.Process{"scheduler": {Command: "gantryd scheduler", System: &types.SystemProcess{}}},
		Counts:    map[string]int{"scheduler": 0}}
	for i, img := range []string{"gantry/platform:v1", "gantry/platform:v2"} {
		idle.Image = img
		ch, err := s.EnsureSystemApp(ctx, idle)
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.GetApp(ctx, idle.Name)
		if err != nil || !ch.Changed || ch.Deployment != nil || ch.Release.Version != i+1 || a.Release != i+1 {
			t.Errorf("%s: %+v, app %+v, %v; want v%d current at once", img, ch, a, err, i+1)
		}
	}
	for _, bad := range []SystemApp{
		{Name: "router", Image: "i", Processes: proc("x")},
		{Name: "gantry-router", Processes: proc("x")},
		{Name: "gantry-router", Image: "i"},
		{Name: "gantry-router", Image: "i", Processes: proc("x"), Counts: map[string]int{"web": 1}},
	} {
		if _, err := s.EnsureSystemApp(ctx, bad); err == nil {
			t.Errorf("EnsureSystemApp(%+v) took an invalid app", bad)
		}
	}
}
