package controller_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// TestGCAndHostsAPI checks POST /v1/gc and GET /v1/hosts through HTTP:
// admin only, and their answers' shapes on a cluster without hosts.
func TestGCAndHostsAPI(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, tc := range []struct {
		name, method, path, token string
		status                    int
	}{
		{"gc, platform token", "POST", "/v1/gc", "Bearer host-token", http.StatusForbidden},
		{"gc, no token", "POST", "/v1/gc", "", http.StatusUnauthorized},
		{"hosts, platform token", "GET", "/v1/hosts", "Bearer host-token", http.StatusForbidden},
		{"gc, wrong method", "GET", "/v1/gc", "Bearer " + a.token, http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := a.raw(t, tc.method, tc.path, "", tc.token)
			if resp.StatusCode != tc.status {
				t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
		})
	}

	rep, err := a.c.GC(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 0 || rep.EtcdRevision == 0 || rep.Hosts == nil {
		t.Errorf("GC = %+v, want no error, a revision, an empty host list", rep)
	}
	hosts, err := a.c.ListHosts(t.Context())
	if err != nil || len(hosts) != 0 {
		t.Errorf("ListHosts = %v, %v; want none", hosts, err)
	}
	_, body := a.raw(t, "GET", "/v1/hosts", "", "Bearer "+a.token)
	var raw []types.Host
	if err := json.Unmarshal(body, &raw); err != nil || raw == nil {
		t.Errorf("GET /v1/hosts body %s: want [] (%v)", body, err)
	}
}
