package client

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/gantryhq/gantry/layer1/controller/types"
)

// The API itself is tested against a real controller in package controller;
// these tests cover what only the client does.

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = New(base+"/", "tok").ListApps(t.Context())
	if err == nil {
		t.Fatal("no error")
	}
	want := "cannot reach the controller at " + base + ": "
	if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err = %q, want %q... wrapping ECONNREFUSED", err, want)
	}
}

func TestErrorAnswers(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		is      *types.Error
		message string
	}{
		{"API error", 404, `{"error":{"code":"app_not_found","message":"no app named \"x\""}}`,
			types.ErrAppNotFound, `no app named "x"`},
		{"unauthorized", 401, `{"error":{"code":"unauthorized","message":"the API token was rejected"}}`,
			types.ErrUnauthorized, "the API token was rejected (check GANTRY_TOKEN)"},
		{"proxy page", 502, "<html>Bad Gateway</html>\nmore", types.ErrInternal, "502 Bad Gateway: <html>Bad Gateway</html>"},
		{"plain 404", 404, "404 page not found", types.ErrNotFound, "404 Not Found: 404 page not found"},
		{"unavailable without body", 503, "", types.ErrUnavailable, "503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if got := r.Header.Get("Authorization"); got != "Bearer tok" {
					t.Errorf("Authorization = %q", got)
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			_, err := New(srv.URL, "tok").GetApp(t.Context(), "x")
			var e *types.Error
			if !errors.As(err, &e) || !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %s", err, tt.is.Code)
			}
			if e.Status != tt.status || e.Message != tt.message {
				t.Errorf("got status %d message %q, want %d %q", e.Status, e.Message, tt.status, tt.message)
			}
		})
	}
}

func TestPaths(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Method+" "+r.URL.EscapedPath())
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c := New(srv.URL, "")
	if err := c.RemoveKey(t.Context(), "SHA256:a/b+c"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteApp(t.Context(), "demo"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveRoute(t.Context(), "demo", "*.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.KillJob(t.Context(), "demo", "demo.web.1.0123456789ab"); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(t.Context(), "demo", ""); err != nil {
		t.Fatal(err)
	}
	want := []string{"DELETE /v1/keys/SHA256:a%2Fb+c", "DELETE /v1/apps/demo", "DELETE /v1/apps/demo/routes/%2A.example.test",
		"DELETE /v1/apps/demo/jobs/demo.web.1.0123456789ab", "POST /v1/apps/demo/restart"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("requests %q, want %q", got, want)
	}
}

// TestMalformedToken checks that a token that cannot go into a header gets
// an error naming the token, not "cannot reach the controller". Spaces
// around it (a token read from a file with its newline) are trimmed.
func TestMalformedToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte("[]"))
	}))
	t.Cleanup(srv.Close)
	if _, err := New(srv.URL, "tok\n").ListApps(t.Context()); err != nil {
		t.Errorf("token with a trailing newline: %v", err)
	}
	for _, token := range []string{"to\nk", "to k", "t\x00k", "tök"} {
		_, err := New(srv.URL, token).ListApps(t.Context())
		var e *types.Error
		if !errors.As(err, &e) || !errors.Is(err, types.ErrUnauthorized) || !strings.Contains(e.Message, "which no token has (check GANTRY_TOKEN)") {
			t.Errorf("token %q: err = %v", token, err)
		}
	}
}
