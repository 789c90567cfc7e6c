package controller_test

import (
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestHTTPSOnly turns an app's https_only on and off through PATCH
// /v1/apps/{app}: the app shows it, the mirror carries it to the routes of
// all its domains (the routers redirect those with a certificate), another
// app is untouched, and bodies that change nothing or are malformed are
// refused.
func TestHTTPSOnly(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	ctx := t.Context()
	for _, app := range []string{"demo", "other"} {
		if _, err := a.c.CreateApp(ctx, app); err != nil {
			t.Fatal(err)
		}
		if _, err := a.c.CreateRelease(ctx, app, webRelease(app+":v1")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.c.AddRoute(ctx, "demo", types.RouteRequest{Domain: "www.example.test"}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.c.GetApp(ctx, "demo"); err != nil || got.HTTPSOnly {
		t.Fatalf("GetApp of a new app = %+v, %v; want https_only off", got, err)
	}

	on, off := true, false
	for _, tt := range []struct {
		name string
		set  *bool
	}{
		{"on", &on},
		{"off", &off},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.c.UpdateApp(ctx, "demo", types.UpdateAppRequest{HTTPSOnly: tt.set})
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != "demo" || got.HTTPSOnly != *tt.set || got.Release != 1 || got.WebURL == "" {
				t.Errorf("UpdateApp = %+v, want demo with https_only %v", got, *tt.set)
			}
			apps, err := a.c.ListApps(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, app := range apps {
				if want := app.Name == "demo" && *tt.set; app.HTTPSOnly != want {
					t.Errorf("ListApps: %s https_only %v, want %v", app.Name, app.HTTPSOnly, want)
				}
			}
			routes := a.routes(t)
			for _, d := range []string{"demo.localhost", "www.example.test"} {
				if rt := routes[d]; rt.AppHTTPSOnly != *tt.set || rt.HTTPSOnly {
					t.Errorf("etcd route %s = %+v, want app_https_only %v and no https_only of its own", d, rt, *tt.set)
				}
			}
			if rt := routes["other.localhost"]; rt.App != "other" || rt.AppHTTPSOnly {
				t.Errorf("etcd route of the other app = %+v", rt)
			}
		})
	}

	const p = "/v1/apps/demo"
	a.runRaw(t, []rawCase{
		{"empty object", "PATCH", p, `{}`, 422, "invalid", `the body changes nothing`},
		{"null", "PATCH", p, `{"https_only": null}`, 422, "invalid", `the body changes nothing`},
		{"not a bool", "PATCH", p, `{"https_only": "on"}`, 400, "bad_request", `field "https_only"`},
		{"unknown field", "PATCH", p, `{"maintenance": true}`, 400, "bad_request", `unknown field "maintenance"`},
		{"empty body", "PATCH", p, ``, 400, "bad_request", "the request body is empty"},
		{"unknown app", "PATCH", "/v1/apps/nope", `{"https_only": true}`, 404, "app_not_found", "nope"},
		{"bad app name", "PATCH", "/v1/apps/No", `{"https_only": true}`, 404, "app_not_found", ""},
	})
}
