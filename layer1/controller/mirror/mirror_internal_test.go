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
