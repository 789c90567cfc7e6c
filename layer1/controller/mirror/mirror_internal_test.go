package mirror

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/gantryhq/gantry/layer0/keyspace"
	"github.com/gantryhq/gantry/layer0/sealed"
	"github.com/gantryhq/gantry/layer1/controller/store"
	"github.com/gantryhq/gantry/layer1/controller/types"
	routertypes "github.com/gantryhq/gantry/router/types"
)

// TestDesiredRoutes checks what the mirror writes for a route: the key as
// stored (sealed; the routers open it), and https_only held back while an
// ACME certificate is awaited.
func TestDesiredRoutes(t *testing.T) {
	const sealedKey = sealed.SealedPrefix + "AAAA"
	space := keyspace.MustNew("c-test")
	m := &Mirror{space: space, domain: func(app string) string { return app + ".localhost" }, log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name      string
		route     store.Route
		httpsOnly bool
		cert, key string
	}{
		{"plain key", store.Route{Domain: "a.test", App: "a", TLSCert: "CERT", TLSKey: "KEY", HTTPSOnly: true}, true, "CERT", "KEY"},
		{"sealed key stays sealed", store.Route{Domain: "a.test", App: "a", TLSCert: "CERT", TLSKey: sealedKey}, false, "CERT", sealedKey},
		{"pending certificate holds https_only", store.Route{Domain: "a.test", App: "a", HTTPSOnly: true, CertState: types.CertPending}, false, "", ""},
		{"failed first certificate holds https_only", store.Route{Domain: "a.test", App: "a", HTTPSOnly: true, CertState: types.CertFailed}, false, "", ""},
		{"failed renewal keeps https_only", store.Route{Domain: "a.test", App: "a", HTTPSOnly: true, CertState: types.CertFailed, TLSCert: "CERT", TLSKey: sealedKey}, true, "CERT", sealedKey},
		{"no ACME, no certificate", store.Route{Domain: "a.test", App: "a", HTTPSOnly: true}, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := m.desired(store.MirrorState{Routes: []store.Route{tt.route}})
			var got routertypes.Route
			if err := json.Unmarshal(want[space.Route("a.test")], &got); err != nil {
				t.Fatal(err)
			}
			if got.HTTPSOnly != tt.httpsOnly || got.TLSCert != tt.cert || got.TLSKey != tt.key {
				t.Errorf("mirrored https_only=%v cert=%q key=%q, want %v %q %q", got.HTTPSOnly, got.TLSCert, got.TLSKey, tt.httpsOnly, tt.cert, tt.key)
			}
		})
	}
}

// TestDesiredDefaultRoute checks the default route the mirror writes: the
// certificate obtained for the app's default domain (not one for an
// earlier platform domain), and the app's https_only.
func TestDesiredDefaultRoute(t *testing.T) {
	const sealedKey = sealed.SealedPrefix + "AAAA"
	space := keyspace.MustNew("c-test")
	m := &Mirror{space: space, domain: func(app string) string { return app + ".apps.example.test" }, log: slog.New(slog.DiscardHandler)}
	issued := store.DefaultCert{App: "a", Domain: "a.apps.example.test", TLSCert: "CERT", TLSKey: sealedKey, CertState: types.CertIssued}
	earlier := issued
	earlier.Domain = "a.old.example.test"
	tests := []struct {
		name string
		st   store.MirrorState
		want routertypes.Route
	}{
		{"no certificate", store.MirrorState{},
			routertypes.Route{Domain: "a.apps.example.test", App: "a", Service: "a-web"}},
		{"issued certificate", store.MirrorState{DefaultCerts: map[string]store.DefaultCert{"a": issued}},
			routertypes.Route{Domain: "a.apps.example.test", App: "a", Service: "a-web", TLSCert: "CERT", TLSKey: sealedKey}},
		{"certificate of an earlier domain", store.MirrorState{DefaultCerts: map[string]store.DefaultCert{"a": earlier}},
			routertypes.Route{Domain: "a.apps.example.test", App: "a", Service: "a-web"}},
		{"app https_only", store.MirrorState{HTTPSOnly: map[string]bool{"a": true}, DefaultCerts: map[string]store.DefaultCert{"a": issued}},
			routertypes.Route{Domain: "a.apps.example.test", App: "a", Service: "a-web", AppHTTPSOnly: true, TLSCert: "CERT", TLSKey: sealedKey}},
		{"another app's custom route of the domain wins", store.MirrorState{Routes: []store.Route{{Domain: "a.apps.example.test", App: "b"}},
			DefaultCerts: map[string]store.DefaultCert{"a": issued}},
			routertypes.Route{Domain: "a.apps.example.test", App: "b", Service: "b-web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.st.WebApps = []string{"a"}
			want := m.desired(tt.st)
			var got routertypes.Route
			if err := json.Unmarshal(want[space.Route("a.apps.example.test")], &got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("mirrored %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestSystemFormation checks the job template of a process of the
// platform's own apps: on the host's network with its port and binds, the
// system label, no service and no default route; an app's web process
// keeps its published port and its service.
func TestSystemFormation(t *testing.T) {
	space := keyspace.MustNew("c-test")
	m := &Mirror{space: space, domain: func(app string) string { return app + ".localhost" }, log: slog.New(slog.DiscardHandler)}
	binds := []keyspace.Bind{{Source: "/var/lib/gantry", Target: "/var/lib/gantry"}}
	sys := store.MirrorFormation{App: "gantry-controller", Release: store.ReleaseRef{ID: "r1", Version: 1}, Type: "controller", Count: 1,
		Image: "gantry/platform:v1", Process: types.Process{Command: "gantryd controller --data /var/lib/gantry", HealthPath: "/healthz",
			System: &types.SystemProcess{Port: 7070, Binds: binds}}}
	web := store.MirrorFormation{App: "demo", Release: store.ReleaseRef{ID: "r2", Version: 1}, Type: "web", Count: 1,
		Image: "demo:v1", Process: types.Process{Command: "/server"}}
	want := m.desired(store.MirrorState{Formations: []store.MirrorFormation{sys, web}, WebApps: []string{"demo"}})
	tests := []struct {
		name string
		key  string
		want keyspace.JobSpec
	}{
		{"system process", space.Formation("gantry-controller", "r1", "controller"), keyspace.JobSpec{
			App: "gantry-controller", Release: "r1", ReleaseVersion: 1, Type: "controller", Image: "gantry/platform:v1",
			Entrypoint: []string{"gantryd"}, Cmd: []string{"controller", "--data", "/var/lib/gantry"}, Port: 7070, Health: keyspace.HealthCheck{Path: "/healthz"},
			System: "gantry-controller", HostNetwork: true, Binds: binds}},
		{"app process", space.Formation("demo", "r2", "web"), keyspace.JobSpec{
			App: "demo", Release: "r2", ReleaseVersion: 1, Type: "web", Image: "demo:v1", Cmd: []string{"/server"},
			Port: types.WebPort, Service: "demo-web"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f keyspace.Formation
			if err := json.Unmarshal(want[tt.key], &f); err != nil {
				t.Fatalf("formation %s: %v", tt.key, err)
			}
			got, _ := json.Marshal(f.Template)
			exp, _ := json.Marshal(tt.want)
			if string(got) != string(exp) {
				t.Errorf("template\n got %s\nwant %s", got, exp)
			}
		})
	}
	if _, ok := want[space.Route("gantry-controller.localhost")]; ok {
		t.Errorf("a system app without a web process got a default route")
	}
}

// TestPerHostFormation checks that a system process's PerHost reaches its
// formation, and that other formations are not per-host.
func TestPerHostFormation(t *testing.T) {
	space := keyspace.MustNew("c-test")
	m := &Mirror{space: space, domain: func(app string) string { return app + ".localhost" }, log: slog.New(slog.DiscardHandler)}
	formation := func(app string, sys *types.SystemProcess) store.MirrorFormation {
		return store.MirrorFormation{App: app, Release: store.ReleaseRef{ID: app + "-r1", Version: 1}, Type: "run", Count: 1,
			Image: "img:v1", Process: types.Process{Command: "/run", System: sys}}
	}
	tests := []struct {
		name string
		f    store.MirrorFormation
		want bool
	}{
		{"per-host system process", formation("gantry-router", &types.SystemProcess{Port: 80, PerHost: true}), true},
		{"counted system process", formation("gantry-scheduler", &types.SystemProcess{}), false},
		{"app process", formation("demo", nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := space.Formation(tt.f.App, tt.f.Release.ID, tt.f.Type)
			var f keyspace.Formation
			if err := json.Unmarshal(m.desired(store.MirrorState{Formations: []store.MirrorFormation{tt.f}})[key], &f); err != nil {
				t.Fatalf("formation %s: %v", key, err)
			}
			if f.PerHost != tt.want {
				t.Errorf("per_host = %v, want %v", f.PerHost, tt.want)
			}
		})
	}
}
