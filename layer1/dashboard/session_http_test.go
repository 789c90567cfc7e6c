package dashboard_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gantryhq/gantry/layer1/dashboard"
)

// signIn signs in to p with token and returns the session cookie and the
// CSRF token.
func (p *platform) signIn(t *testing.T, token string) (*http.Cookie, string) {
	t.Helper()
	resp, body := p.do(t, "POST", "/session", `{"token": "`+token+`"}`,
		http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
	}
	var info dashboard.SessionInfo
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.CSRFToken == "" {
		t.Fatalf("sign-in answer %s: %v", body, err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == dashboard.CookieName {
			return c, info.CSRFToken
		}
	}
	t.Fatalf("sign-in set no %s cookie: %v", dashboard.CookieName, resp.Header["Set-Cookie"])
	return nil, ""
}

// errorCode returns the code of an error body, or "".
func errorCode(body string) string {
	var eb struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &eb)
	return eb.Error.Code
}

func TestSignIn(t *testing.T) {
	t.Parallel()
	p := startPlatform(t)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name, body string
		header     http.Header
		status     int
		code       string
	}{
		{"wrong token", `{"token": "gty_nope"}`, jsonHeader, 401, "unauthorized"},
		{"the platform token", `{"token": "` + hostToken + `"}`, jsonHeader, 401, "unauthorized"},
		{"a form", "token=" + p.token, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, 400, "bad_request"},
		{"malformed JSON", `{"token": `, jsonHeader, 400, "bad_request"},
		{"another site's page", `{"token": "` + p.token + `"}`,
			http.Header{"Content-Type": {"application/json"}, "Origin": {"http://evil.example"}}, 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := p.do(t, "POST", "/session", tc.body, tc.header)
			if resp.StatusCode != tc.status || errorCode(body) != tc.code {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
			if len(resp.Cookies()) != 0 {
				t.Errorf("a refused sign-in set cookies: %v", resp.Cookies())
			}
		})
	}

	t.Run("cookie attributes", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			header http.Header
			secure bool
		}{
			{"over HTTP", jsonHeader, false},
			{"behind an HTTPS proxy", http.Header{"Content-Type": {"application/json"}, "X-Forwarded-Proto": {"https"}}, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				resp, body := p.do(t, "POST", "/session", `{"token": "`+p.token+`"}`, tc.header)
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("%d %s", resp.StatusCode, body)
				}
				set := strings.Join(resp.Header["Set-Cookie"], "\n")
				c := resp.Cookies()[0]
				if c.Name != dashboard.CookieName || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode ||
					c.Path != "/" || c.Secure != tc.secure || c.MaxAge <= 0 {
					t.Errorf("Set-Cookie %s: want HttpOnly, SameSite=Strict, Path=/, Max-Age, Secure=%v", set, tc.secure)
				}
				if strings.Contains(set, p.token) || strings.Contains(body, p.token) {
					t.Errorf("the API token is in the answer: %s %s", set, body)
				}
			})
		}
	})
}

func TestSessionAuth(t *testing.T) {
	t.Parallel()
	p := startPlatform(t)
	cookie, csrf := p.signIn(t, p.token)
	withCookie := func(extra ...string) http.Header {
		h := http.Header{"Cookie": {cookie.String()}, "Content-Type": {"application/json"}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
		code                     string
	}{
		{"read with the cookie", "GET", "/v1/apps", "", withCookie(), 200, ""},
		{"session info", "GET", "/session", "", withCookie(), 200, ""},
		{"change without the CSRF token", "POST", "/v1/apps", `{"name": "nocsrf"}`, withCookie(), 403, "forbidden"},
		{"change with a wrong CSRF token", "POST", "/v1/apps", `{"name": "badcsrf"}`, withCookie(dashboard.CSRFHeader, csrf+"x"), 403, "forbidden"},
		{"change with the CSRF token", "POST", "/v1/apps", `{"name": "withcsrf"}`, withCookie(dashboard.CSRFHeader, csrf), 201, ""},
		{"unknown session", "GET", "/v1/apps", "", http.Header{"Cookie": {dashboard.CookieName + "=nope"}}, 401, "unauthorized"},
		{"bearer with a bogus cookie", "POST", "/v1/apps", `{"name": "bearer"}`,
			http.Header{"Authorization": {"Bearer " + p.token}, "Cookie": {dashboard.CookieName + "=nope"}}, 201, ""},
		{"a wrong bearer is not saved by the cookie", "GET", "/v1/apps", "", withCookie("Authorization", "Bearer gty_nope"), 401, "unauthorized"},
		{"unknown /v1/ path", "GET", "/v1/nope", "", withCookie(), 404, "not_found"},
		{"unknown path", "GET", "/nope", "", nil, 404, "not_found"},
		{"sign-out without the CSRF token", "DELETE", "/session", "", withCookie(), 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := p.do(t, tc.method, tc.path, tc.body, tc.header)
			if resp.StatusCode != tc.status || errorCode(body) != tc.code {
				t.Fatalf("got %d %s, want %d %q", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	apps, err := p.c.ListApps(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "bearer,withcsrf" {
		t.Errorf("apps %v, want only those made with the CSRF token or a bearer token", names)
	}

	t.Run("sign-out ends the session", func(t *testing.T) {
		c, token := p.signIn(t, p.token)
		h := http.Header{"Cookie": {c.String()}}
		if resp, body := p.do(t, "GET", "/v1/apps", "", h); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		resp, body := p.do(t, "DELETE", "/session", "", http.Header{"Cookie": {c.String()}, dashboard.CSRFHeader: {token}})
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("sign-out: %d %s", resp.StatusCode, body)
		}
		if cs := resp.Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
			t.Errorf("sign-out did not delete the cookie: %v", resp.Header["Set-Cookie"])
		}
		if resp, body := p.do(t, "GET", "/v1/apps", "", h); resp.StatusCode != 401 {
			t.Fatalf("after sign-out: %d %s, want 401", resp.StatusCode, body)
		}
	})

	t.Run("removing the API token ends its sessions", func(t *testing.T) {
		h := http.Header{"Cookie": {cookie.String()}}
		conn, err := pgx.Connect(t.Context(), p.db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(t.Context(), `DELETE FROM api_tokens`); err != nil {
			t.Fatal(err)
		}
		if resp, body := p.do(t, "GET", "/v1/apps", "", h); resp.StatusCode != 401 || !strings.Contains(body, "removed") {
			t.Fatalf("after the token's removal: %d %s, want 401", resp.StatusCode, body)
		}
	})
}

func TestPages(t *testing.T) {
	t.Parallel()
	p := startPlatform(t)
	for _, tc := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html", `<main id="main"`},
		{"/login", "text/html", `<main id="main"`},
		{"/apps/demo", "text/html", `<main id="main"`},
		{"/assets/app.js", "text/javascript", "Gantry dashboard"},
		{"/assets/app.css", "text/css", "Gantry dashboard"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := p.do(t, "GET", tc.path, "", nil)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType) ||
				!strings.Contains(body, tc.contains) {
				t.Fatalf("%d %s %.80q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
	if resp, body := p.do(t, "GET", "/assets/nope.js", "", nil); resp.StatusCode != 404 {
		t.Errorf("a missing asset: %d %s", resp.StatusCode, body)
	}
}
